-- +goose Up
-- The activity a form's submissions record; '' means form_submitted. Demo
-- and contact request forms make every submitter a hand-raiser.
ALTER TABLE forms ADD COLUMN activity_type text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE forms DROP COLUMN activity_type;
