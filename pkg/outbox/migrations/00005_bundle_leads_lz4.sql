-- +goose Up
-- A bundle's event_leads (a lead id per event) is also over the size at
-- which PostgreSQL compresses a value, and it was compressed with the
-- default, pglz, which spends much CPU on ids that hardly shrink. LZ4 gives
-- up on them quickly.
-- +goose StatementBegin
DO $$
BEGIN
    ALTER TABLE outbox ALTER COLUMN event_leads SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    NULL;
END $$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE outbox ALTER COLUMN event_leads SET COMPRESSION default;
