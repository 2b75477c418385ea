-- +goose Up

-- One account per company domain and workspace, created when its first lead
-- arrives. Free-mail leads have none.
CREATE TABLE accounts (
    id           uuid PRIMARY KEY,
    workspace_id text NOT NULL,
    domain       text NOT NULL,
    create_time  timestamptz NOT NULL,
    UNIQUE (workspace_id, domain)
);

-- A lead is one person, unique per workspace by normalised email. Erased
-- leads stay as tombstones without personal data (email NULL, erase_time
-- set), so their id stays valid in events; merged leads stay as tombstones
-- pointing at their survivor (merged_into), keeping the email so that a
-- later capture of it reaches the survivor.
CREATE TABLE leads (
    id                uuid PRIMARY KEY,
    workspace_id      text NOT NULL,
    email             text,
    first_name        text NOT NULL DEFAULT '',
    last_name         text NOT NULL DEFAULT '',
    company           text NOT NULL DEFAULT '',
    title             text NOT NULL DEFAULT '',
    phone             text NOT NULL DEFAULT '',
    country           text NOT NULL DEFAULT '',
    industry          text NOT NULL DEFAULT '',
    employee_count    integer NOT NULL DEFAULT 0,
    source            text NOT NULL DEFAULT '',
    campaign          text NOT NULL DEFAULT '',
    custom_attributes jsonb NOT NULL DEFAULT '{}',
    company_domain    text NOT NULL DEFAULT '',
    account_id        uuid REFERENCES accounts (id),
    unsubscribed      boolean NOT NULL DEFAULT false,
    version           bigint NOT NULL DEFAULT 1,
    create_time       timestamptz NOT NULL,
    update_time       timestamptz NOT NULL,
    erase_time        timestamptz,
    merged_into       uuid REFERENCES leads (id),
    CHECK (erase_time IS NULL OR email IS NULL)
);

-- The deduplication key: one live lead per workspace and email.
CREATE UNIQUE INDEX leads_email ON leads (workspace_id, email)
    WHERE email IS NOT NULL AND merged_into IS NULL;
-- Merged tombstones by email, for routing a capture to the survivor.
CREATE INDEX leads_merged_email ON leads (workspace_id, email)
    WHERE email IS NOT NULL AND merged_into IS NOT NULL;
CREATE INDEX leads_merged_into ON leads (merged_into) WHERE merged_into IS NOT NULL;
-- ListLeads: newest first among live leads.
CREATE INDEX leads_recent ON leads (workspace_id, create_time DESC, id DESC)
    WHERE erase_time IS NULL AND merged_into IS NULL;

-- Activities; client_event_id makes a redelivery a no-op.
CREATE TABLE activities (
    id              uuid PRIMARY KEY,
    workspace_id    text NOT NULL,
    lead_id         uuid NOT NULL REFERENCES leads (id),
    type            text NOT NULL,
    occur_time      timestamptz NOT NULL,
    url             text NOT NULL DEFAULT '',
    content_id      text NOT NULL DEFAULT '',
    client_event_id text,
    properties      jsonb NOT NULL DEFAULT '{}',
    create_time     timestamptz NOT NULL
);

CREATE UNIQUE INDEX activities_client_event ON activities (workspace_id, lead_id, client_event_id)
    WHERE client_event_id IS NOT NULL;
CREATE INDEX activities_by_lead ON activities (lead_id, occur_time DESC, id DESC);

-- Consent grants and withdrawals. ip_address is personal data: erased with
-- the lead, while the record that consent was given stays.
CREATE TABLE consents (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id text NOT NULL,
    lead_id      uuid NOT NULL REFERENCES leads (id),
    purpose      text NOT NULL,
    text_version text NOT NULL DEFAULT '',
    granted      boolean NOT NULL,
    record_time  timestamptz NOT NULL,
    source       text NOT NULL DEFAULT '',
    ip_address   text
);

CREATE INDEX consents_by_lead ON consents (lead_id, record_time);

-- Change history: field names only, never values.
CREATE TABLE lead_changes (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id   text NOT NULL,
    lead_id        uuid NOT NULL REFERENCES leads (id),
    kind           text NOT NULL,
    source         text NOT NULL DEFAULT '',
    changed_fields text[] NOT NULL DEFAULT '{}',
    change_time    timestamptz NOT NULL
);

CREATE INDEX lead_changes_by_lead ON lead_changes (lead_id, id DESC);

-- Audit of merges.
CREATE TABLE lead_merges (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id   text NOT NULL,
    survivor_id    uuid NOT NULL REFERENCES leads (id),
    source_id      uuid NOT NULL REFERENCES leads (id),
    request_id     text NOT NULL DEFAULT '',
    actor          text NOT NULL DEFAULT '',
    changed_fields text[] NOT NULL DEFAULT '{}',
    merge_time     timestamptz NOT NULL
);

-- Idempotency records (AIP-155): the outcome of a request, by id. They hold
-- ids only, never the request body.
CREATE TABLE requests (
    workspace_id text NOT NULL,
    operation    text NOT NULL,
    request_id   text NOT NULL,
    resource_id  text,
    created      boolean NOT NULL DEFAULT false,
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (workspace_id, operation, request_id)
);

-- Public forms. Ids are global: a submission names only the form.
CREATE TABLE forms (
    id                   text PRIMARY KEY,
    workspace_id         text NOT NULL,
    display_name         text NOT NULL DEFAULT '',
    field_mapping        jsonb NOT NULL DEFAULT '{}',
    source               text NOT NULL DEFAULT '',
    campaign             text NOT NULL DEFAULT '',
    consent_purpose      text NOT NULL DEFAULT '',
    consent_text         text NOT NULL DEFAULT '',
    consent_text_version text NOT NULL DEFAULT '',
    allowed_origins      text[] NOT NULL DEFAULT '{}',
    thank_you_url        text NOT NULL DEFAULT '',
    honeypot_field       text NOT NULL DEFAULT '',
    version              bigint NOT NULL DEFAULT 1,
    create_time          timestamptz NOT NULL,
    update_time          timestamptz NOT NULL
);

CREATE INDEX forms_by_workspace ON forms (workspace_id, create_time DESC, id DESC);

-- +goose Down
DROP TABLE forms;
DROP TABLE requests;
DROP TABLE lead_merges;
DROP TABLE lead_changes;
DROP TABLE consents;
DROP TABLE activities;
DROP TABLE leads;
DROP TABLE accounts;
