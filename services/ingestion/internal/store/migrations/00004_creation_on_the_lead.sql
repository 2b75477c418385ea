-- +goose Up
-- A lead's creation is its history's first entry, kept on the lead row
-- itself (the channel that created it and the fields it set) instead of a
-- lead_changes row of its own: a bulk import writes one row per new lead,
-- not two. Leads created before keep their creation in lead_changes, and
-- these stay NULL.
ALTER TABLE leads ADD COLUMN create_source text;
ALTER TABLE leads ADD COLUMN create_fields text[];

-- +goose Down
INSERT INTO lead_changes (workspace_id, lead_id, kind, source, changed_fields, change_time)
SELECT workspace_id, id, 'created', create_source, create_fields, create_time
  FROM leads WHERE create_fields IS NOT NULL;
ALTER TABLE leads DROP COLUMN create_fields;
ALTER TABLE leads DROP COLUMN create_source;
