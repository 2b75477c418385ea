-- +goose Up
-- Leads merged into another, so that late events about them cannot bring
-- back a routing copy (or open a handoff) for a lead that no longer exists:
-- its handoffs and facts live on with the survivor.
CREATE TABLE merged_leads (
    workspace_id text NOT NULL,
    id           text NOT NULL,
    survivor_id  text NOT NULL,
    merge_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id)
);

-- +goose Down
DROP TABLE merged_leads;
