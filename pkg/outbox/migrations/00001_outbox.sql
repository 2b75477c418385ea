-- +goose Up
-- One row per (event, subscriber) waiting for delivery. Rows are deleted once
-- delivered, so the table stays small and the pending index stays hot.
CREATE TABLE outbox (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          uuid NOT NULL,
    workspace_id      text NOT NULL,
    subscriber        text NOT NULL,
    event_type        text NOT NULL,
    -- The leadflow.events.v1.Event, protobuf-encoded.
    event             bytea NOT NULL,
    attempts          integer NOT NULL DEFAULT 0,
    next_attempt_time timestamptz NOT NULL DEFAULT now(),
    last_error        text,
    create_time       timestamptz NOT NULL DEFAULT now(),
    dead_time         timestamptz,
    UNIQUE (event_id, subscriber)
);

CREATE INDEX outbox_due ON outbox (next_attempt_time, id) WHERE dead_time IS NULL;

-- Receivers record each event id they handled, in the same transaction as
-- the handling, so a redelivery changes nothing.
CREATE TABLE inbox (
    event_id     uuid PRIMARY KEY,
    workspace_id text NOT NULL,
    event_type   text NOT NULL,
    receive_time timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE inbox;
DROP TABLE outbox;
