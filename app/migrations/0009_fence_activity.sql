-- Per-fence activity (`GET /v1/reports/fences`): a store's presence events of a period, every
-- kind (the older partial index covers enters only).
CREATE INDEX geo_events_store_at_idx ON geo_events (store_id, at);
