-- +goose Up
-- One row per workspace scoring has seen; it hands out model versions.
CREATE TABLE workspaces (
    id           text PRIMARY KEY,
    last_version bigint NOT NULL
);

CREATE TABLE models (
    workspace_id   text NOT NULL REFERENCES workspaces (id),
    id             text NOT NULL,
    display_name   text NOT NULL DEFAULT '',
    description    text NOT NULL DEFAULT '',
    state          text NOT NULL CHECK (state IN ('draft', 'published', 'superseded')),
    version        bigint NOT NULL DEFAULT 0,
    -- The scoring.Rules document: rules, groups, caps, threshold, grades.
    rules          jsonb NOT NULL,
    request_id     text,
    etag           text NOT NULL,
    create_time    timestamptz NOT NULL,
    update_time    timestamptz NOT NULL,
    publish_time   timestamptz,
    supersede_time timestamptz,
    PRIMARY KEY (workspace_id, id)
);

-- Exactly one live model per workspace.
CREATE UNIQUE INDEX models_one_published ON models (workspace_id) WHERE state = 'published';
CREATE UNIQUE INDEX models_request ON models (workspace_id, request_id) WHERE request_id IS NOT NULL;
CREATE INDEX models_newest ON models (workspace_id, create_time DESC, id DESC);

-- A lead as scoring knows it: facts from ingestion, the last stored score,
-- qualification and outcome.
CREATE TABLE leads (
    workspace_id          text NOT NULL,
    id                    text NOT NULL,
    facts                 jsonb NOT NULL DEFAULT '{}',
    facts_time            timestamptz,
    model_id              text NOT NULL DEFAULT '',
    model_version         bigint NOT NULL DEFAULT 0,
    fit_milli             bigint NOT NULL DEFAULT 0,
    engagement_milli      bigint NOT NULL DEFAULT 0,
    total_milli           bigint NOT NULL DEFAULT 0,
    -- Whole points of total_milli, for ordering and filtering.
    total_score           bigint NOT NULL DEFAULT 0,
    grade                 text NOT NULL DEFAULT '',
    above_threshold       boolean NOT NULL DEFAULT false,
    score_time            timestamptz,
    qualify_reason        smallint,
    qualify_time          timestamptz,
    qualify_total         bigint,
    qualify_model_version bigint,
    qualify_activity      text,
    outcome               text CHECK (outcome IN ('won', 'lost')),
    outcome_time          timestamptz,
    create_time           timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE INDEX leads_by_total ON leads (workspace_id, total_score DESC, id);
CREATE INDEX leads_by_outcome ON leads (workspace_id, outcome_time DESC) WHERE outcome IS NOT NULL;

-- Activities are keyed by their ingestion id, so a redelivered event cannot
-- add points twice.
CREATE TABLE activities (
    workspace_id text NOT NULL,
    id           text NOT NULL,
    lead_id      text NOT NULL,
    type         smallint NOT NULL,
    url          text NOT NULL DEFAULT '',
    content_id   text NOT NULL DEFAULT '',
    properties   jsonb,
    occur_time   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE INDEX activities_by_lead ON activities (workspace_id, lead_id, occur_time);

CREATE TABLE threshold_crossings (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id  text NOT NULL,
    lead_id       text NOT NULL,
    up            boolean NOT NULL,
    cross_time    timestamptz NOT NULL,
    total_score   bigint NOT NULL,
    model_version bigint NOT NULL
);

CREATE INDEX threshold_crossings_by_lead ON threshold_crossings (workspace_id, lead_id, id DESC);

-- Erased (survivor_id NULL) and merged leads, so late events about them are
-- dropped or redirected instead of bringing them back.
CREATE TABLE lead_tombstones (
    workspace_id text NOT NULL,
    lead_id      text NOT NULL,
    survivor_id  text,
    PRIMARY KEY (workspace_id, lead_id)
);

CREATE TABLE rescore_jobs (
    workspace_id    text NOT NULL,
    id              text NOT NULL,
    model_id        text NOT NULL,
    model_version   bigint NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    total_leads     bigint NOT NULL DEFAULT 0,
    processed_leads bigint NOT NULL DEFAULT 0,
    changed_leads   bigint NOT NULL DEFAULT 0,
    qualified_leads bigint NOT NULL DEFAULT 0,
    failed_leads    bigint NOT NULL DEFAULT 0,
    -- The last lead id rescored; the next batch starts after it.
    cursor          text NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL,
    start_time      timestamptz,
    end_time        timestamptz,
    error_message   text NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, id)
);

CREATE INDEX rescore_jobs_open ON rescore_jobs (create_time) WHERE state IN ('pending', 'running');
CREATE INDEX rescore_jobs_newest ON rescore_jobs (workspace_id, create_time DESC, id DESC);

-- +goose Down
DROP TABLE rescore_jobs;
DROP TABLE lead_tombstones;
DROP TABLE threshold_crossings;
DROP TABLE activities;
DROP TABLE leads;
DROP TABLE models;
DROP TABLE workspaces;
