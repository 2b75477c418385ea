-- +goose Up
-- A bulk writer's events travel in bundles: one row carries many events of
-- one type (events, with their leads alongside in event_leads), so an import
-- of a thousand leads writes a handful of outbox rows, not a thousand. The
-- relay delivers a bundle's events like any others; what of a bundle is not
-- done goes back into the outbox as rows of their own.
--
-- shard spreads the rows over a relay's lanes by lead. A bundle holds the
-- events of one shard's leads, so a lead's events, bundled or not, still go
-- through one lane. Rows from before take a shard from their lead too.
ALTER TABLE outbox ALTER COLUMN event DROP NOT NULL;
ALTER TABLE outbox ADD COLUMN events bytea[];
-- A bundle's events repeat much (type names, trace context): LZ4 shrinks
-- them several times over for less than writing them out whole costs. A
-- server built without LZ4 keeps the default compression.
-- +goose StatementBegin
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN events SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;
-- +goose StatementEnd
ALTER TABLE outbox ADD COLUMN event_leads text[];
ALTER TABLE outbox ADD COLUMN event_count integer NOT NULL DEFAULT 1;
ALTER TABLE outbox ADD COLUMN shard smallint NOT NULL DEFAULT 0;
UPDATE outbox SET shard = (hashtext(coalesce(lead_id, '')) & 2147483647) % 8;
ALTER TABLE outbox ADD CONSTRAINT outbox_event_or_bundle CHECK (
    (event IS NOT NULL AND events IS NULL AND event_count = 1)
    OR (event IS NULL AND cardinality(events) = event_count AND cardinality(event_leads) = event_count));

-- Erasure finds the bundles of a workspace through this index, then the
-- lead among their event_leads: a bundle is one entry, not one per event.
CREATE INDEX outbox_bundles ON outbox (workspace_id) WHERE events IS NOT NULL;

-- Every event waiting in the outbox, bundled or not, one row each: for
-- operators (and tests) looking into what is owed to whom. An event's place
-- is (id, position).
CREATE VIEW outbox_events AS
SELECT id, 1::bigint AS position, workspace_id, subscribers, event_type, event, lead_id,
       attempts, next_attempt_time, last_error, create_time, dead_time
  FROM outbox WHERE events IS NULL
UNION ALL
SELECT o.id, t.position, o.workspace_id, o.subscribers, o.event_type, t.event, nullif(t.lead_id, ''),
       o.attempts, o.next_attempt_time, o.last_error, o.create_time, o.dead_time
  FROM outbox o, unnest(o.events, o.event_leads) WITH ORDINALITY AS t (event, lead_id, position)
 WHERE o.events IS NOT NULL AND t.event IS NOT NULL;

-- +goose Down
DROP VIEW outbox_events;
DROP INDEX outbox_bundles;
-- Bundles are unpacked into rows of one event each.
INSERT INTO outbox (event_id, workspace_id, subscribers, event_type, event, lead_id, attempts,
                    next_attempt_time, last_error, create_time, dead_time)
SELECT gen_random_uuid(), workspace_id, subscribers, event_type, e, nullif(l, ''), attempts,
       next_attempt_time, last_error, create_time, dead_time
  FROM outbox, unnest(events, event_leads) AS t (e, l)
 WHERE events IS NOT NULL AND e IS NOT NULL;
DELETE FROM outbox WHERE events IS NOT NULL;
ALTER TABLE outbox DROP CONSTRAINT outbox_event_or_bundle;
ALTER TABLE outbox DROP COLUMN shard;
ALTER TABLE outbox DROP COLUMN event_count;
ALTER TABLE outbox DROP COLUMN event_leads;
ALTER TABLE outbox DROP COLUMN events;
ALTER TABLE outbox ALTER COLUMN event SET NOT NULL;
