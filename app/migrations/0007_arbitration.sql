-- The next best action: every delivery keeps why it won (the matched campaigns, their learned
-- P(conversion), value and drawn score, the rule or draw that decided, the moment's context and
-- learning bucket). Older deliveries have none. The learner's evidence is read from deliveries
-- by (campaign_id, why->'context'->>'bucket'), so the expression is indexed with the campaign.
ALTER TABLE deliveries ADD COLUMN why jsonb;
CREATE INDEX deliveries_arbitration ON deliveries (campaign_id, (why -> 'context' ->> 'bucket'))
    WHERE why IS NOT NULL;
