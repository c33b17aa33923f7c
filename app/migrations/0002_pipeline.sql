-- The micromoment pipeline: presence, geo events, deliveries (the outbox) and suppressions.

-- Campaigns and policy get a version like the fence catalogue, checked once per ping batch.
CREATE TABLE campaign_version (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version   bigint NOT NULL
);
INSERT INTO campaign_version (version) VALUES (1);

CREATE OR REPLACE FUNCTION notify_campaigns() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE v bigint;
BEGIN
    UPDATE campaign_version SET version = version + 1 RETURNING version INTO v;
    PERFORM pg_notify('contexto_campaigns', v::text);
    RETURN NULL;
END $$;

-- One row per device: the presence state machine of every fence it is in (geo.presence).
CREATE TABLE presence (
    device_id  uuid PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    state      jsonb NOT NULL,
    last_at    timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- What presence detection concluded: the history visits and predictions are built from.
CREATE TABLE geo_events (
    id          bigserial PRIMARY KEY,
    device_id   uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    customer_id text,
    fence_id    uuid NOT NULL,
    store_id    uuid NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('entered', 'dwelled', 'exited')),
    at          timestamptz NOT NULL,
    entered_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX geo_events_device_idx ON geo_events (device_id, at);
CREATE INDEX geo_events_store_idx ON geo_events (store_id, at) WHERE kind = 'entered';

-- The outbox. A delivery is unique per (campaign, device, moment): a retried or duplicated
-- batch can never queue a second push for the same moment.
CREATE TABLE deliveries (
    id                 uuid PRIMARY KEY,
    campaign_id        uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id          uuid,               -- NULL once the device is erased
    moment_key         text NOT NULL,
    trigger_kind       text NOT NULL,
    fence_id           uuid,
    store_id           uuid NOT NULL,
    moment_at          timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    status             text NOT NULL DEFAULT 'queued'
                       CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'expired')),
    attempts           integer NOT NULL DEFAULT 0,
    next_attempt_at    timestamptz NOT NULL DEFAULT now(),
    claimed_at         timestamptz,
    fcm_message_name   text,
    error_code         text,
    predicted_store_id uuid,
    probability        double precision,
    arrived_at         timestamptz,        -- predicted_next: the Entered at the predicted store
    created_at         timestamptz NOT NULL DEFAULT now(),
    sent_at            timestamptz,
    opened_at          timestamptz,
    dismissed_at       timestamptz,
    redeemed_at        timestamptz,
    UNIQUE (campaign_id, device_id, moment_key)
);
CREATE INDEX deliveries_claim_idx ON deliveries (next_attempt_at) WHERE status = 'queued';
CREATE INDEX deliveries_sending_idx ON deliveries (claimed_at) WHERE status = 'sending';
CREATE INDEX deliveries_device_idx ON deliveries (device_id, created_at);
CREATE INDEX deliveries_campaign_idx ON deliveries (campaign_id, status);

CREATE FUNCTION notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('contexto_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_queued AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();

-- Why a matched campaign did not send for a moment: one row per (campaign, device, moment).
CREATE TABLE suppressions (
    campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id   uuid,                      -- NULL once the device is erased
    moment_key  text NOT NULL,
    reason      text NOT NULL,
    detail      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, device_id, moment_key)
);
CREATE INDEX suppressions_campaign_idx ON suppressions (campaign_id, reason);
