-- +goose Up
-- The lead an event is about, so that erasing a lead can drop its
-- undelivered events (they may carry personal data such as page URLs).
ALTER TABLE outbox ADD COLUMN lead_id text;
CREATE INDEX outbox_lead ON outbox (workspace_id, lead_id) WHERE lead_id IS NOT NULL;

-- +goose Down
DROP INDEX outbox_lead;
ALTER TABLE outbox DROP COLUMN lead_id;
