-- +goose Up
CREATE TABLE leads (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO applied (version) VALUES (2);

-- +goose Down
DROP TABLE leads;
DELETE FROM applied WHERE version = 2;
