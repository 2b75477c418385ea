-- +goose Up
CREATE TABLE workspaces (
    id           text PRIMARY KEY,
    display_name text NOT NULL DEFAULT '',
    create_time  timestamptz NOT NULL
);

CREATE TABLE api_keys (
    workspace_id text NOT NULL REFERENCES workspaces (id),
    id           text PRIMARY KEY,
    display_name text NOT NULL DEFAULT '',
    scopes       text[] NOT NULL,
    -- SHA-256 of the whole secret; the secret itself is never stored.
    secret_hash  bytea NOT NULL,
    create_time  timestamptz NOT NULL,
    revoke_time  timestamptz
);

CREATE INDEX api_keys_by_workspace ON api_keys (workspace_id, create_time DESC, id DESC);

-- +goose Down
DROP TABLE api_keys;
DROP TABLE workspaces;
