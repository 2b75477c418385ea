-- +goose Up
CREATE DOMAIN stage AS text CHECK (VALUE IN (
    'inquiry', 'mql', 'tql', 'sal', 'sql', 'opportunity', 'won', 'lost', 'sgl', 'disqualified', 'recycled'));

-- One row per lead lifecycle has heard of: its current stage and what its
-- temperature and funnel filters need. No personal data is held here.
CREATE TABLE leads (
    workspace_id       text NOT NULL,
    lead_id            text NOT NULL,
    stage              stage NOT NULL,
    previous_stage     stage,
    reason             text NOT NULL DEFAULT '',
    stage_enter_time   timestamptz NOT NULL,
    recycle_count      integer NOT NULL DEFAULT 0,
    -- Counts transitions; it is the etag.
    version            bigint NOT NULL,
    bant               jsonb,
    score              bigint,
    score_time         timestamptz,
    last_activity_time timestamptz NOT NULL,
    source             text NOT NULL DEFAULT '',
    campaign           text NOT NULL DEFAULT '',
    create_time        timestamptz NOT NULL,
    update_time        timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, lead_id)
);

CREATE INDEX leads_by_source ON leads (workspace_id, source) WHERE source <> '';
CREATE INDEX leads_by_campaign ON leads (workspace_id, campaign) WHERE campaign <> '';

-- Every move ever made, append-only (erasure deletes a lead's rows, a merge
-- may re-attribute them). The funnel is computed from this table alone.
CREATE TABLE transitions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id    text NOT NULL,
    lead_id         text NOT NULL,
    -- NULL for the move that created the lifecycle.
    from_stage      stage,
    to_stage        stage NOT NULL,
    transition_time timestamptz NOT NULL,
    -- Written with the row so the funnel needs no window functions:
    --   from_enter_time: when the lead had entered from_stage (this ends that stay);
    --   prev_enter_time: the lead's previous entry into to_stage, if any;
    --   prev_exit_time:  the lead's previous exit from from_stage, if any.
    -- A lead entered a stage in [a, b) once per entry whose prev_enter_time
    -- is NULL or before a, which counts leads without DISTINCT.
    from_enter_time timestamptz,
    prev_enter_time timestamptz,
    prev_exit_time  timestamptz,
    reason          text NOT NULL DEFAULT '',
    note            text NOT NULL DEFAULT '',
    bant            jsonb,
    backward        boolean NOT NULL DEFAULT false,
    actor_kind      text NOT NULL,
    actor_id        text NOT NULL,
    -- "api" or the triggering event's type.
    trigger         text NOT NULL,
    event_id        text,
    request_id      text,
    trace_id        text NOT NULL DEFAULT '',
    -- The lead's temperature when it moved ('' before its first score).
    temperature     text NOT NULL DEFAULT '' CHECK (temperature IN ('', 'cold', 'warm', 'hot'))
);

CREATE INDEX transitions_by_lead ON transitions (workspace_id, lead_id, transition_time DESC, id DESC);
CREATE UNIQUE INDEX transitions_by_request ON transitions (workspace_id, lead_id, request_id)
    WHERE request_id IS NOT NULL;
CREATE INDEX transitions_by_time ON transitions (workspace_id, transition_time);

-- A workspace's policy; absent until first changed (the defaults apply).
CREATE TABLE settings (
    workspace_id         text PRIMARY KEY,
    -- {"mql": ["tql", "sal", ...], ...}
    allowed              jsonb NOT NULL,
    -- [{"code": "competitor", "display_name": "..."}, ...]
    lost_reasons         jsonb NOT NULL,
    disqualified_reasons jsonb NOT NULL,
    version              bigint NOT NULL,
    update_time          timestamptz NOT NULL
);

-- Leads that are gone: erased (survivor_id NULL) or merged into a survivor.
-- Late events about them are dropped or redirected instead of resurrecting
-- the lead.
CREATE TABLE gone_leads (
    workspace_id text NOT NULL,
    lead_id      text NOT NULL,
    survivor_id  text,
    gone_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, lead_id)
);

-- +goose Down
DROP TABLE gone_leads;
DROP TABLE settings;
DROP TABLE transitions;
DROP TABLE leads;
DROP DOMAIN stage;
