-- +goose Up
-- Every row is confined to a workspace; ids are unique within one.

CREATE TABLE teams (
    workspace_id  text NOT NULL,
    id            text NOT NULL,
    display_name  text NOT NULL DEFAULT '',
    strategy      smallint NOT NULL DEFAULT 1,
    manager_id    text NOT NULL DEFAULT '',
    -- Assignment state: the last owner picked (round-robin) and the smooth
    -- weighted round-robin's current weights, so routing is deterministic.
    rr_cursor     text NOT NULL DEFAULT '',
    wrr_weights   jsonb NOT NULL DEFAULT '{}',
    request_id    text NOT NULL DEFAULT '',
    create_time   timestamptz NOT NULL,
    update_time   timestamptz NOT NULL,
    version       bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX teams_request ON teams (workspace_id, request_id) WHERE request_id <> '';

CREATE TABLE owners (
    workspace_id    text NOT NULL,
    id              text NOT NULL,
    -- Personal data: never logged; blanked by DeleteOwner.
    display_name    text NOT NULL DEFAULT '',
    email           text NOT NULL DEFAULT '',
    external_id     text NOT NULL DEFAULT '',
    manager_id      text NOT NULL DEFAULT '',
    attributes      jsonb NOT NULL DEFAULT '{}',
    max_leads       integer NOT NULL DEFAULT 0,
    capacity_period smallint NOT NULL DEFAULT 2,
    out_of_office   boolean NOT NULL DEFAULT false,
    ooo_end_time    timestamptz,
    disabled        boolean NOT NULL DEFAULT false,
    -- Deleted owners stay (past handoffs name them) but are hidden.
    deleted         boolean NOT NULL DEFAULT false,
    request_id      text NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    version         bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX owners_request ON owners (workspace_id, request_id) WHERE request_id <> '';

CREATE TABLE team_members (
    workspace_id text NOT NULL,
    team_id      text NOT NULL,
    owner_id     text NOT NULL,
    PRIMARY KEY (workspace_id, team_id, owner_id),
    FOREIGN KEY (workspace_id, owner_id) REFERENCES owners (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX team_members_by_owner ON team_members (workspace_id, owner_id);

CREATE TABLE routing_policies (
    workspace_id  text PRIMARY KEY,
    rules         jsonb NOT NULL DEFAULT '[]',
    fallback_team text NOT NULL DEFAULT '',
    revision      bigint NOT NULL DEFAULT 0,
    update_time   timestamptz NOT NULL
);

CREATE TABLE sla_settings (
    workspace_id        text PRIMARY KEY,
    acceptance_deadline_us bigint NOT NULL,
    working_hours       jsonb NOT NULL,
    breach_action       smallint NOT NULL,
    max_reassignments   integer NOT NULL,
    escalation_enabled  boolean NOT NULL,
    escalation_deadline_us bigint NOT NULL,
    update_time         timestamptz NOT NULL,
    version             bigint NOT NULL DEFAULT 1
);

-- The routing copy of each lead, fed by events; each facet keeps the time of
-- the event that set it, because events arrive in any order.
CREATE TABLE leads (
    workspace_id     text NOT NULL,
    id               text NOT NULL,
    facts            jsonb NOT NULL DEFAULT '{}',
    attributes_time  timestamptz,
    score_time       timestamptz,
    stage_time       timestamptz,
    PRIMARY KEY (workspace_id, id)
);

-- Erased leads, so that late events cannot bring their data back.
CREATE TABLE erased_leads (
    workspace_id text NOT NULL,
    id           text NOT NULL,
    erase_time   timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE handoffs (
    workspace_id   text NOT NULL,
    id             text NOT NULL,
    lead_id        text NOT NULL,
    state          smallint NOT NULL,
    origin         smallint NOT NULL,
    owner_id       text NOT NULL DEFAULT '',
    team_id        text NOT NULL DEFAULT '',
    routing        jsonb NOT NULL,
    routed_lead    jsonb NOT NULL,
    -- The SLA timers: due_time while ASSIGNED, escalate_time while
    -- ESCALATED. The SLA worker claims due rows with FOR UPDATE SKIP LOCKED
    -- and moves them on in the same transaction, so each fires once.
    due_time       timestamptz,
    escalated_to   text NOT NULL DEFAULT '',
    escalate_time  timestamptz,
    escalated      boolean NOT NULL DEFAULT false,
    reassignments  integer NOT NULL DEFAULT 0,
    accept_time    timestamptz,
    accept_note    text NOT NULL DEFAULT '',
    reject_time    timestamptz,
    reject_reason  text NOT NULL DEFAULT '',
    close_time     timestamptz,
    close_reason   text NOT NULL DEFAULT '',
    request_id     text NOT NULL DEFAULT '',
    create_time    timestamptz NOT NULL,
    update_time    timestamptz NOT NULL,
    version        bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (workspace_id, id)
);
-- At most one open (QUEUED, ASSIGNED, ESCALATED) handoff per lead: the last
-- line of defence of exactly-once creation.
CREATE UNIQUE INDEX handoffs_one_open ON handoffs (workspace_id, lead_id) WHERE state IN (1, 2, 3);
CREATE UNIQUE INDEX handoffs_request ON handoffs (workspace_id, request_id) WHERE request_id <> '';
CREATE INDEX handoffs_by_lead ON handoffs (workspace_id, lead_id, create_time DESC);
CREATE INDEX handoffs_by_time ON handoffs (workspace_id, create_time DESC, id DESC);
CREATE INDEX handoffs_by_owner ON handoffs (workspace_id, owner_id, state);
CREATE INDEX handoffs_sla_due ON handoffs (due_time) WHERE state = 2;
CREATE INDEX handoffs_escalation_due ON handoffs (escalate_time) WHERE state = 3;

CREATE TABLE assignments (
    workspace_id text NOT NULL,
    handoff_id   text NOT NULL,
    seq          integer NOT NULL,
    owner_id     text NOT NULL,
    team_id      text NOT NULL DEFAULT '',
    routing      jsonb NOT NULL,
    assign_time  timestamptz NOT NULL,
    due_time     timestamptz,
    outcome      smallint NOT NULL DEFAULT 0,
    end_time     timestamptz,
    user_id      text NOT NULL DEFAULT '',
    PRIMARY KEY (workspace_id, handoff_id, seq),
    FOREIGN KEY (workspace_id, handoff_id) REFERENCES handoffs (workspace_id, id) ON DELETE CASCADE
);
-- Capacity counts assignments per owner and period.
CREATE INDEX assignments_by_owner ON assignments (workspace_id, owner_id, assign_time);

CREATE TABLE sla_breaches (
    workspace_id text NOT NULL,
    id           text NOT NULL,
    handoff_id   text NOT NULL,
    lead_id      text NOT NULL,
    owner_id     text NOT NULL,
    team_id      text NOT NULL DEFAULT '',
    manager_id   text NOT NULL DEFAULT '',
    due_time     timestamptz NOT NULL,
    breach_time  timestamptz NOT NULL,
    action       smallint NOT NULL,
    PRIMARY KEY (workspace_id, id),
    FOREIGN KEY (workspace_id, handoff_id) REFERENCES handoffs (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX sla_breaches_by_time ON sla_breaches (workspace_id, breach_time DESC, id DESC);

CREATE TABLE webhook_subscriptions (
    workspace_id    text NOT NULL,
    id              text NOT NULL,
    display_name    text NOT NULL DEFAULT '',
    url             text NOT NULL,
    event_types     smallint[] NOT NULL,
    max_attempts    integer NOT NULL,
    disabled        boolean NOT NULL DEFAULT false,
    -- Signing needs the secret itself, so it is kept (never logged, never
    -- returned after creation or rotation). The previous one signs too until
    -- previous_expire_time.
    secret               text NOT NULL,
    previous_secret      text NOT NULL DEFAULT '',
    previous_expire_time timestamptz,
    request_id      text NOT NULL DEFAULT '',
    create_time     timestamptz NOT NULL,
    update_time     timestamptz NOT NULL,
    version         bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (workspace_id, id)
);
CREATE UNIQUE INDEX webhook_subscriptions_request ON webhook_subscriptions (workspace_id, request_id) WHERE request_id <> '';

CREATE TABLE webhook_deliveries (
    workspace_id      text NOT NULL,
    subscription_id   text NOT NULL,
    id                text NOT NULL,
    event_id          text NOT NULL,
    event_type        smallint NOT NULL,
    handoff_id        text NOT NULL,
    -- The WebhookPayload in JSON, fixed when the event happened.
    payload           bytea NOT NULL,
    state             smallint NOT NULL DEFAULT 1,
    attempt_count     integer NOT NULL DEFAULT 0,
    -- Attempts of the current budget (reset by a redrive).
    budget_used       integer NOT NULL DEFAULT 0,
    attempts          jsonb NOT NULL DEFAULT '[]',
    -- The delivery timer: the worker claims PENDING rows due at or before
    -- now with FOR UPDATE SKIP LOCKED.
    next_attempt_time timestamptz,
    redrive_count     integer NOT NULL DEFAULT 0,
    create_time       timestamptz NOT NULL,
    complete_time     timestamptz,
    PRIMARY KEY (workspace_id, subscription_id, id),
    FOREIGN KEY (workspace_id, subscription_id) REFERENCES webhook_subscriptions (workspace_id, id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, handoff_id) REFERENCES handoffs (workspace_id, id) ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_time) WHERE state = 1;
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (workspace_id, create_time DESC, id DESC);

-- +goose Down
DROP TABLE webhook_deliveries;
DROP TABLE webhook_subscriptions;
DROP TABLE sla_breaches;
DROP TABLE assignments;
DROP TABLE handoffs;
DROP TABLE erased_leads;
DROP TABLE leads;
DROP TABLE sla_settings;
DROP TABLE routing_policies;
DROP TABLE team_members;
DROP TABLE owners;
DROP TABLE teams;
