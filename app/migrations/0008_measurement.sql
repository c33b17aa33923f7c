-- Measurement: which moments were treated and which were held out, so that conversions can be
-- counted for both (campaigns/assignments.py writes them; campaigns/uplift.py reads them).

-- The global control group: this share of devices never gets a push from any campaign.
ALTER TABLE policy ADD COLUMN global_holdout_percent double precision NOT NULL DEFAULT 0
    CHECK (global_holdout_percent BETWEEN 0 AND 20);

-- One row per moment a campaign won, written in the decision's transaction:
--   treated         the offer was queued (the delivery of the same campaign, device and moment
--                   says whether it reached FCM: only a `sent` one treated anybody);
--   control         the device sat in the campaign's holdout, so nothing of it was sent;
--   global_control  the device is in the global control group; this campaign would have gone out.
-- `global_holdout`: the device was in the global control group when decided (its `control` rows
-- only keep its would-be history; they are no control for the campaign, whose treated devices
-- are never in that group). `store_ids`: the campaign's stores when decided, which a visit or a
-- purchase must be at to convert; NULL for a campaign that matches every store.
-- Rows go with their device when it is erased, and with their campaign.
CREATE TABLE assignments (
    campaign_id    uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    device_id      uuid NOT NULL,
    customer_key   text NOT NULL,          -- the device's customer_id, else 'device:<id>'
    moment_key     text NOT NULL,
    moment_at      timestamptz NOT NULL,
    fence_id       uuid,
    store_id       uuid NOT NULL,          -- the moment's store
    store_ids      uuid[],
    arm            text NOT NULL CHECK (arm IN ('treated', 'control', 'global_control')),
    global_holdout boolean NOT NULL,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (campaign_id, device_id, moment_key),
    CHECK (global_holdout OR arm <> 'global_control'),
    CHECK (NOT global_holdout OR arm <> 'treated')
);
-- The decision rules read a device's would-be pushes with its real ones (caps, gaps, cooldowns).
CREATE INDEX assignments_device_idx ON assignments (device_id, created_at)
    WHERE arm <> 'treated';
-- The global report reads every campaign's moments of a period.
CREATE INDEX assignments_moment_idx ON assignments (moment_at);
