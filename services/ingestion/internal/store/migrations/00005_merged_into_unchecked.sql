-- +goose Up
-- Every new lead queued a foreign-key check on merged_into, NULL for all of
-- them, that ran after each bulk COPY: a row's worth of trigger work for
-- nothing. As with account_id (00003), the code keeps the reference: a
-- merge sets merged_into in the transaction that locked the survivor, and
-- leads are never deleted (erased and merged leads stay as tombstones).
ALTER TABLE leads DROP CONSTRAINT leads_merged_into_fkey;

-- +goose Down
ALTER TABLE leads ADD FOREIGN KEY (merged_into) REFERENCES leads (id);
