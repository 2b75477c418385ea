-- +goose Up
ALTER TABLE leads ADD COLUMN score integer NOT NULL DEFAULT 0 CHECK (score BETWEEN 0 AND 100);

-- +goose StatementBegin
CREATE FUNCTION clamp_score(s integer) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT greatest(0, least(100, s));
$$;
-- +goose StatementEnd

INSERT INTO applied (version) VALUES (3);

-- +goose Down
DROP FUNCTION clamp_score(integer);
ALTER TABLE leads DROP COLUMN score;
DELETE FROM applied WHERE version = 3;
