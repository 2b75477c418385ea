-- +goose Up
-- A new lead's creation fields (00004) as a bit set: bit n-1 stands for the
-- n-th name below, the order in which a capture lists the fields it sets.
-- As text[] they took a third of a new lead's row, and PostgreSQL parsed
-- them element by element in every bulk COPY. The order is fixed for good
-- (new fields go at the end): the store's creationFields is the same list,
-- and a test checks that the two agree.
CREATE FUNCTION creation_field_names(bits integer) RETURNS text[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN ARRAY(
        SELECT name
          FROM unnest(ARRAY['email', 'first_name', 'last_name', 'company', 'title', 'phone', 'country',
                            'industry', 'source', 'campaign', 'employee_count', 'custom_attributes',
                            'unsubscribed']) WITH ORDINALITY AS f (name, n)
         WHERE bits & (1 << (n::integer - 1)) <> 0
         ORDER BY n);

-- The other way, for this migration only.
CREATE FUNCTION creation_field_bits(names text[]) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT
    RETURN (SELECT coalesce(sum(1 << (n::integer - 1)), 0)::integer
              FROM unnest(creation_field_names(-1)) WITH ORDINALITY AS f (name, n)
             WHERE name = ANY(names));
ALTER TABLE leads ALTER COLUMN create_fields TYPE integer USING creation_field_bits(create_fields);
DROP FUNCTION creation_field_bits(text[]);

-- +goose Down
ALTER TABLE leads ALTER COLUMN create_fields TYPE text[] USING creation_field_names(create_fields);
DROP FUNCTION creation_field_names(integer);
