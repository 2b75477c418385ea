-- +goose Up
-- One row per event instead of one per (event, subscriber): the row lists the
-- subscribers still owed the event, and the relay fans it out. A bulk import
-- writes a third of the rows and index entries it used to. A subscriber that
-- refuses an event for good is split off into a parked row of its own.
ALTER TABLE outbox ADD COLUMN subscribers text[];
UPDATE outbox SET subscribers = ARRAY[subscriber];
ALTER TABLE outbox ALTER COLUMN subscribers SET NOT NULL;
ALTER TABLE outbox ADD CHECK (cardinality(subscribers) > 0);
-- Drops the UNIQUE (event_id, subscriber) constraint with it: event ids are
-- fresh UUIDs, so nothing needs an index on them.
ALTER TABLE outbox DROP COLUMN subscriber;

-- +goose Down
ALTER TABLE outbox ADD COLUMN subscriber text;
INSERT INTO outbox (event_id, workspace_id, subscriber, event_type, event, attempts, next_attempt_time,
                    last_error, create_time, dead_time, lead_id, subscribers)
SELECT event_id, workspace_id, s, event_type, event, attempts, next_attempt_time,
       last_error, create_time, dead_time, lead_id, ARRAY[s]
  FROM outbox, unnest(subscribers[2:]) AS s
 WHERE cardinality(subscribers) > 1;
UPDATE outbox SET subscriber = subscribers[1];
ALTER TABLE outbox ALTER COLUMN subscriber SET NOT NULL;
ALTER TABLE outbox ADD UNIQUE (event_id, subscriber);
ALTER TABLE outbox DROP COLUMN subscribers;
