-- Webhooks: subscriptions, the durable event stream, one delivery row per (subscription, event)
-- and one attempt row per HTTP POST (campaigns/webhooks/).

-- Subscriptions are staff writes: made, deleted and replayed under the audit log.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_resource_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_resource_check
    CHECK (resource IN ('api_key', 'store', 'geofence', 'campaign', 'policy', 'webhook'));
ALTER TABLE audit_log DROP CONSTRAINT audit_log_action_check;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_action_check
    CHECK (action IN ('create', 'update', 'delete', 'activate', 'pause', 'revoke', 'import',
                      'replay'));

-- A subscription. The signing secret is needed in clear at send time, so it is kept encrypted
-- (AES-GCM under WEBHOOK_SECRET_KEY, which is never in the database): a dump shows only
-- `secret_sealed`. Deleting a subscription takes its deliveries and attempts with it.
CREATE TABLE webhooks (
    id            uuid PRIMARY KEY,
    url           text NOT NULL,
    events        text[] NOT NULL,
    secret_sealed bytea NOT NULL,
    created_at    timestamptz NOT NULL
);
CREATE INDEX webhooks_events_idx ON webhooks USING gin (events);

-- The stream. A row is written in the transaction of the fact it reports (and only when some
-- subscription wants its type), so a committed fact always has its event and a rolled-back one
-- never does. `fanned_out_at` is set when the worker has made its delivery rows. `dedupe_key`
-- makes a fact that can be written twice (a retried purchase signal) one event. `device_id` is
-- the device the event is about, so that erasing the device erases its events (and their
-- deliveries and attempts) and its export shows them.
CREATE TABLE webhook_events (
    id            uuid PRIMARY KEY,
    device_id     uuid,
    type          text NOT NULL CHECK (type IN ('moment', 'delivery.sent', 'delivery.failed',
                                                'delivery.opened', 'delivery.redeemed',
                                                'conversion')),
    created_at    timestamptz NOT NULL,
    data          jsonb NOT NULL,
    dedupe_key    text UNIQUE,
    fanned_out_at timestamptz
);
CREATE INDEX webhook_events_pending_idx ON webhook_events (created_at) WHERE fanned_out_at IS NULL;
CREATE INDEX webhook_events_created_idx ON webhook_events (created_at);
CREATE INDEX webhook_events_device_idx ON webhook_events (device_id) WHERE device_id IS NOT NULL;

-- One event to one subscription: queued → sending (claimed, with a lease) → delivered | dead.
-- `first_attempt_at` starts the retry window (24 h by default). A replay adds new rows for the
-- same events.
CREATE TABLE webhook_deliveries (
    id               uuid PRIMARY KEY,
    webhook_id       uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id         uuid NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'sending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL,
    next_attempt_at  timestamptz NOT NULL,
    claimed_at       timestamptz,
    first_attempt_at timestamptz,
    finished_at      timestamptz
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (webhook_id, next_attempt_at)
    WHERE status = 'queued';
CREATE INDEX webhook_deliveries_claimed_idx ON webhook_deliveries (webhook_id, claimed_at)
    WHERE status = 'sending';
CREATE INDEX webhook_deliveries_event_idx ON webhook_deliveries (event_id);

-- Every HTTP attempt: its outcome (`delivered`, `retry`, `dead`), latency, the receiver's status
-- code (none when it never answered) and the error in words.
CREATE TABLE webhook_attempts (
    id            uuid PRIMARY KEY,
    webhook_id    uuid NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    delivery_id   uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    event_id      uuid NOT NULL,
    event_type    text NOT NULL,
    attempt       integer NOT NULL,
    at            timestamptz NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'dead')),
    latency_ms    double precision NOT NULL,
    response_code integer,
    error         text
);
CREATE INDEX webhook_attempts_list_idx ON webhook_attempts (webhook_id, at, id);
CREATE INDEX webhook_attempts_delivery_idx ON webhook_attempts (delivery_id);

-- Wake the relay when events or deliveries (a replay) are written; a statement that wrote no
-- row (no subscription wanted the event) notifies nobody.
CREATE FUNCTION notify_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM written) THEN
        PERFORM pg_notify('contexto_webhooks', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER webhook_events_written AFTER INSERT ON webhook_events
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION notify_webhooks();
CREATE TRIGGER webhook_deliveries_written AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION notify_webhooks();
