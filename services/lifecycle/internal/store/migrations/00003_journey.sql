-- +goose Up
-- The key events of a lead's journey that are not stage changes (those are
-- in transitions): captured, qualified, assigned, accepted, rejected. Each
-- keeps the trace context of the request behind it, so a user can jump from
-- a lead to its traces, and later actions can link back to the capture.
CREATE TABLE journey_steps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id text NOT NULL,
    lead_id      text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('captured', 'qualified', 'assigned', 'accepted', 'rejected')),
    step_time    timestamptz NOT NULL,
    -- Short and non-personal, e.g. "qualified: hand-raiser".
    description  text NOT NULL DEFAULT '',
    source       text NOT NULL DEFAULT '',
    traceparent  text NOT NULL DEFAULT '',
    trace_id     text NOT NULL DEFAULT ''
);

CREATE INDEX journey_steps_by_lead ON journey_steps (workspace_id, lead_id, step_time, id);

-- +goose Down
DROP TABLE journey_steps;
