-- +goose Up
-- Leave a fifth of each page free, so that an update which changes no
-- indexed column (a rescore or event that keeps the whole-point total) can
-- put the new row version on the same page: a HOT update, with no index
-- writes and no bloat for vacuum to chase.
ALTER TABLE leads SET (fillfactor = 80);

-- +goose Down
ALTER TABLE leads RESET (fillfactor);
