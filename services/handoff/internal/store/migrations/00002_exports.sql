-- +goose Up
CREATE TABLE export_schedules (
    workspace_id  text NOT NULL,
    id            text NOT NULL,
    display_name  text NOT NULL DEFAULT '',
    frequency     smallint NOT NULL,
    weekday       smallint NOT NULL DEFAULT 0,
    day_of_month  smallint NOT NULL DEFAULT 1,
    hour          smallint NOT NULL DEFAULT 0,
    time_zone     text NOT NULL DEFAULT 'UTC',
    states        smallint[] NOT NULL DEFAULT '{}',
    disabled      boolean NOT NULL DEFAULT false,
    -- The schedule's timer: the export worker claims rows due at or before
    -- now with FOR UPDATE SKIP LOCKED and moves it on in the same transaction.
    next_run_time timestamptz NOT NULL,
    -- The end of the period the last scheduled run covered.
    last_run_time timestamptz,
    request_id    text NOT NULL DEFAULT '',
    create_time   timestamptz NOT NULL,
    update_time   timestamptz NOT NULL,
    version       bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX export_schedules_request ON export_schedules (workspace_id, request_id) WHERE request_id <> '';
CREATE INDEX export_schedules_due ON export_schedules (next_run_time) WHERE NOT disabled;

CREATE TABLE exports (
    workspace_id      text NOT NULL,
    schedule_id       text NOT NULL,
    id                text NOT NULL,
    state             smallint NOT NULL,
    period_start_time timestamptz NOT NULL,
    period_end_time   timestamptz NOT NULL,
    row_count         bigint NOT NULL DEFAULT 0,
    size_bytes        bigint NOT NULL DEFAULT 0,
    -- The CSV itself; no personal data of leads (see Export in the API).
    data              bytea,
    error_message     text NOT NULL DEFAULT '',
    request_id        text NOT NULL DEFAULT '',
    create_time       timestamptz NOT NULL,
    complete_time     timestamptz,
    expire_time       timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, schedule_id, id),
    FOREIGN KEY (workspace_id, schedule_id) REFERENCES export_schedules (workspace_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX exports_request ON exports (workspace_id, schedule_id, request_id) WHERE request_id <> '';
CREATE INDEX exports_by_time ON exports (workspace_id, create_time DESC, id DESC);
CREATE INDEX exports_expiry ON exports (expire_time);

-- +goose Down
DROP TABLE exports;
DROP TABLE export_schedules;
