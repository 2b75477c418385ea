-- A migration with a typo, to check that the error names this file.

-- +goose Up
CREATE TABEL more_things (id integer PRIMARY KEY);

-- +goose Down
DROP TABLE more_things;
