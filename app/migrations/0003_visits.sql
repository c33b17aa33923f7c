-- Visits: where customers went, for the next-place model. Derived from presence (a store's
-- Entered … Exited) or imported from history.

CREATE TABLE visits (
    id           bigserial PRIMARY KEY,
    customer_key text NOT NULL,            -- the device's customer_id, else 'device:<id>'
    device_id    uuid REFERENCES devices (id) ON DELETE CASCADE,  -- NULL for imported history
    place_id     text NOT NULL,            -- a store id (or an imported place id)
    arrived_at   timestamptz NOT NULL,
    departed_at  timestamptz,
    lat          double precision,
    lng          double precision,
    source       text NOT NULL CHECK (source IN ('presence', 'import')),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX visits_once_idx ON visits (customer_key, place_id, arrived_at);
CREATE INDEX visits_customer_idx ON visits (customer_key, arrived_at);
CREATE INDEX visits_arrived_idx ON visits (arrived_at);
