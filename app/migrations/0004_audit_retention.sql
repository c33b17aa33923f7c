-- The audit log of staff writes, and the indexes retention deletes by.

-- One row per staff write (a created, changed or deleted key, store, fence, campaign or the
-- policy), written in the transaction of the write itself. No foreign keys: the log outlives
-- what it describes, and the key that wrote it.
CREATE TABLE audit_log (
    id          uuid PRIMARY KEY,
    at          timestamptz NOT NULL,
    key_id      uuid,                      -- NULL: the environment admin token (no key row)
    key_name    text NOT NULL,
    action      text NOT NULL
                CHECK (action IN ('create', 'update', 'delete', 'activate', 'pause', 'revoke',
                                  'import')),
    resource    text NOT NULL
                CHECK (resource IN ('api_key', 'store', 'geofence', 'campaign', 'policy')),
    resource_id uuid,                      -- NULL for the policy, which is one of a kind
    before      jsonb,                     -- NULL on create
    after       jsonb,                     -- NULL on delete
    CHECK (before IS NOT NULL OR after IS NOT NULL)
);
-- Pages walk (at, id) newest first, optionally within one key or one resource kind.
CREATE INDEX audit_log_at_idx ON audit_log (at, id);
CREATE INDEX audit_log_key_idx ON audit_log (key_id, at, id);
CREATE INDEX audit_log_resource_idx ON audit_log (resource, at, id);

-- Retention deletes by age alone, across devices: the (device_id, ts) indexes cannot find the
-- old rows without reading them all.
CREATE INDEX pings_ts_idx ON pings (ts);
CREATE INDEX signals_ts_idx ON signals (ts);
