-- Each migration records its version here; a migration applied twice would
-- fail on the primary key, so the tests can see double applies.

-- +goose Up
CREATE TABLE applied (
    version integer PRIMARY KEY
);
INSERT INTO applied (version) VALUES (1);

-- +goose Down
DROP TABLE applied;
