-- The foundation: keys, stores, geofences, devices, pings, signals, campaigns, policy.

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'campaign_manager', 'store_manager', 'app')),
    store_ids   uuid[] NOT NULL DEFAULT '{}',
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE stores (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    timezone    text NOT NULL,
    address     text,
    external_id text UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The fence catalogue's version: bumped by every change to stores or fences, announced on the
-- channel `contexto_catalog`, so that every process reloads its in-memory index at once.
CREATE TABLE catalog_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO catalog_version (version) VALUES (1);

CREATE TABLE geofences (
    id            uuid PRIMARY KEY,
    store_id      uuid NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
    name          text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('polygon', 'circle')),
    geometry      jsonb NOT NULL,           -- the GeoJSON as given
    area_wkb      bytea NOT NULL,           -- the validated area in lng/lat (circles buffered)
    center_lng    double precision NOT NULL,
    center_lat    double precision NOT NULL,
    radius_m      double precision,
    area_m2       double precision NOT NULL,
    dwell_seconds integer NOT NULL CHECK (dwell_seconds BETWEEN 0 AND 86400),
    enabled       boolean NOT NULL DEFAULT true,
    tags          text[] NOT NULL DEFAULT '{}',
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX geofences_store_idx ON geofences (store_id);
CREATE INDEX geofences_tags_idx ON geofences USING gin (tags);

CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v bigint;
BEGIN
    UPDATE catalog_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('contexto_catalog', v::text);
    RETURN NULL;
END $$;

CREATE TRIGGER geofences_catalog AFTER INSERT OR UPDATE OR DELETE ON geofences
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();
CREATE TRIGGER stores_catalog AFTER INSERT OR UPDATE OR DELETE ON stores
    FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version();

CREATE TABLE devices (
    id                 uuid PRIMARY KEY,
    token_hash         bytea NOT NULL UNIQUE,
    platform           text NOT NULL CHECK (platform IN ('android', 'ios', 'web')),
    fcm_token          text,
    fid                text,
    push_retired_at    timestamptz,        -- FCM said the address is gone; cleared by a new one
    customer_id        text,
    locale             text,
    timezone           text,
    app_version        text,
    consent_location   boolean NOT NULL,
    consent_marketing  boolean NOT NULL,
    consent_updated_at timestamptz NOT NULL DEFAULT now(),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (num_nonnulls(fcm_token, fid) <= 1)
);
CREATE INDEX devices_customer_idx ON devices (customer_id) WHERE customer_id IS NOT NULL;

CREATE TABLE pings (
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    ts          timestamptz NOT NULL,
    lat         double precision NOT NULL,
    lng         double precision NOT NULL,
    accuracy_m  real,
    speed_mps   real,
    heading_deg real,
    cell        bigint NOT NULL,           -- H3 cell at H3_RESOLUTION, as its 64-bit integer
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pings_device_ts_idx ON pings (device_id, ts);

CREATE TABLE signals (
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    ts          timestamptz NOT NULL,
    kind        text NOT NULL,
    attributes  jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX signals_device_ts_idx ON signals (device_id, ts);

CREATE TABLE campaigns (
    id                uuid PRIMARY KEY,
    name              text NOT NULL,
    status            text NOT NULL CHECK (status IN ('draft', 'active', 'paused')),
    trigger_kind      text NOT NULL,
    spec              jsonb NOT NULL,      -- the validated CampaignSpec, as written
    priority          integer NOT NULL DEFAULT 0,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    activated_at      timestamptz
);
CREATE INDEX campaigns_status_idx ON campaigns (status);

-- Campaign changes reach every process's in-memory copy through `contexto_campaigns`.
CREATE FUNCTION notify_campaigns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('contexto_campaigns', '');
    RETURN NULL;
END $$;
CREATE TRIGGER campaigns_changed AFTER INSERT OR UPDATE OR DELETE ON campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION notify_campaigns();

CREATE TABLE policy (
    singleton                  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    max_per_device_per_day     integer NOT NULL,
    min_seconds_between_pushes integer NOT NULL,
    quiet_from                 text,
    quiet_to                   text,
    updated_at                 timestamptz NOT NULL DEFAULT now()
);
INSERT INTO policy (max_per_device_per_day, min_seconds_between_pushes, quiet_from, quiet_to)
VALUES (3, 3600, '21:00', '09:00');
CREATE TRIGGER policy_changed AFTER INSERT OR UPDATE OR DELETE ON policy
    FOR EACH STATEMENT EXECUTE FUNCTION notify_campaigns();
