-- +goose Up
CREATE TABLE things (id integer PRIMARY KEY);

-- +goose Down
DROP TABLE things;
