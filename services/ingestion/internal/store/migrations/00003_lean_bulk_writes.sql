-- +goose Up
-- A bulk import writes a leads row and a lead_changes row per lead. The
-- foreign-key triggers on these two columns ran a query per row, a third of
-- the import's database time. The code keeps both references: accounts and
-- leads are never deleted (erased and merged leads stay as tombstones), and
-- a capture writes the referencing row in the transaction that created or
-- locked the row it points to.
ALTER TABLE leads DROP CONSTRAINT leads_account_id_fkey;
ALTER TABLE lead_changes DROP CONSTRAINT lead_changes_lead_id_fkey;

-- History is only ever read per lead, newest first: one index, the key,
-- serves that instead of two.
ALTER TABLE lead_changes DROP CONSTRAINT lead_changes_pkey;
ALTER TABLE lead_changes ADD PRIMARY KEY (lead_id, id);
DROP INDEX lead_changes_by_lead;

-- +goose Down
CREATE INDEX lead_changes_by_lead ON lead_changes (lead_id, id DESC);
ALTER TABLE lead_changes DROP CONSTRAINT lead_changes_pkey;
ALTER TABLE lead_changes ADD PRIMARY KEY (id);
ALTER TABLE lead_changes ADD FOREIGN KEY (lead_id) REFERENCES leads (id);
ALTER TABLE leads ADD FOREIGN KEY (account_id) REFERENCES accounts (id);
