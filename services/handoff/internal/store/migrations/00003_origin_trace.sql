-- +goose Up
-- The W3C traceparent of the request that captured the lead, so actions
-- days later (accept, reject, reassign) can link their spans back to it.
ALTER TABLE leads ADD COLUMN origin_traceparent text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE leads DROP COLUMN origin_traceparent;
