-- Pings partitioned by day (UTC) on `ts`, so that retention drops a whole day at once instead of
-- deleting its rows one by one, and the indexes of the days being written stay small.
--
-- The service creates each day's partition ahead of time, by its own clock (geo/partitions.py,
-- app/partitions.py); this migration creates no day from the database's clock. It moves the
-- rows already stored into one partition per day they cover, and adds the DEFAULT partition,
-- which takes any ping whose day has no partition yet, so an insert never fails for want of
-- one (the service moves such rows into their day when it creates it).

ALTER TABLE pings RENAME TO pings_unpartitioned;
ALTER INDEX pings_device_ts_idx RENAME TO pings_unpartitioned_device_ts_idx;
ALTER INDEX pings_ts_idx RENAME TO pings_unpartitioned_ts_idx;

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
) PARTITION BY RANGE (ts);

CREATE TABLE pings_default PARTITION OF pings DEFAULT;

-- One partition per UTC day of the stored pings, named pings_pYYYYMMDD as the service names them.
DO $$
DECLARE
    day date;
BEGIN
    FOR day IN SELECT DISTINCT (ts AT TIME ZONE 'UTC')::date FROM pings_unpartitioned ORDER BY 1
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF pings FOR VALUES FROM (%L) TO (%L)',
                       'pings_p' || to_char(day, 'YYYYMMDD'),
                       to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
                       to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00');
    END LOOP;
END $$;

INSERT INTO pings (device_id, ts, lat, lng, accuracy_m, speed_mps, heading_deg, cell, received_at)
SELECT device_id, ts, lat, lng, accuracy_m, speed_mps, heading_deg, cell, received_at
FROM pings_unpartitioned;
DROP TABLE pings_unpartitioned;

-- On the parent, so every partition (present and future) gets them: a device's pings in order
-- (ingest, backtests, erasure) and the time index (heat, retention's boundary day).
CREATE INDEX pings_device_ts_idx ON pings (device_id, ts);
CREATE INDEX pings_ts_idx ON pings (ts);
