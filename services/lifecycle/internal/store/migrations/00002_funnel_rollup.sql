-- +goose Up
-- Rollups of the transitions table that let the funnel report read a few
-- rows per day instead of every transition in the range. They are kept in
-- the transaction of every move, erasure and merge, so they cannot drift
-- from the history; funnel_rebuild() recomputes them from it.
--
-- Every fact is counted under up to four keys: (source, campaign),
-- (source, ''), ('', campaign) and ('', ''), where '' means "any". A report
-- filtered by (S, C) reads key (S, C) alone. History with no lead row (a
-- merged loser's) counts under ('', '') only, as the report over
-- transitions does. Days are UTC dates.

-- Entries into (kind 'e') and exits from (kind 'x') a stage on a day, by the
-- day of the lead's previous entry into / exit from that stage
-- ('-infinity' for none): an entry in [a, b) counts a lead when its previous
-- entry is before a.
CREATE TABLE funnel_moves (
    workspace_id text NOT NULL,
    source       text NOT NULL,
    campaign     text NOT NULL,
    day          date NOT NULL,
    stage        stage NOT NULL,
    kind         "char" NOT NULL CHECK (kind IN ('e', 'x')),
    prev_day     date NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (workspace_id, source, campaign, day, stage, kind, prev_day)
);

-- Stays that ended on a day, by funnel_bucket of their length.
CREATE TABLE funnel_stays (
    workspace_id text NOT NULL,
    source       text NOT NULL,
    campaign     text NOT NULL,
    day          date NOT NULL,
    stage        stage NOT NULL,
    bucket       smallint NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (workspace_id, source, campaign, day, stage, bucket)
);

-- Entries into from_stage on day (previous entry on prev_day) that later
-- reached to_stage, by funnel_bucket of the time to the first such entry.
-- Counted when to_stage is entered.
CREATE TABLE funnel_conversions (
    workspace_id text NOT NULL,
    source       text NOT NULL,
    campaign     text NOT NULL,
    from_stage   stage NOT NULL,
    to_stage     stage NOT NULL,
    day          date NOT NULL,
    prev_day     date NOT NULL,
    bucket       smallint NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket)
);

-- funnel_day is the UTC date of t; '-infinity' for NULL.
CREATE FUNCTION funnel_day(t timestamptz) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN coalesce((t AT TIME ZONE 'UTC')::date, '-infinity'::date);

-- funnel_bucket is the histogram bucket of a duration in seconds: 0 below
-- one minute, then 126 buckets growing by the same ratio up to two years
-- (730 days), and 127 beyond. internal/store/histogram.go mirrors it.
CREATE FUNCTION funnel_bucket(seconds float8) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN seconds < 60 THEN 0
                ELSE least(127, 1 + floor(ln(seconds / 60) * 126 / ln(730 * 86400 / 60.0)))::smallint
           END;

-- funnel_keys is the keys a lead's facts count under; NULLs (no lead row)
-- give ('', '') only.
-- +goose StatementBegin
CREATE FUNCTION funnel_keys(src text, camp text) RETURNS TABLE (source text, campaign text)
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT DISTINCT s, c
      FROM (VALUES ('', ''), (coalesce($1, ''), ''), ('', coalesce($2, '')),
                   (coalesce($1, ''), coalesce($2, ''))) AS k(s, c)
$$;
-- +goose StatementEnd

-- The facts of the history, one row per fact, which the rollups count.
CREATE VIEW funnel_move_facts AS
SELECT t.workspace_id, t.lead_id, funnel_day(t.transition_time) AS day, f.stage, f.kind, f.prev_day
  FROM transitions t
 CROSS JOIN LATERAL (VALUES (t.to_stage, 'e'::"char", funnel_day(t.prev_enter_time)),
                            (t.from_stage, 'x'::"char", funnel_day(t.prev_exit_time))) AS f(stage, kind, prev_day)
 WHERE f.stage IS NOT NULL;

CREATE VIEW funnel_stay_facts AS
SELECT t.workspace_id, t.lead_id, funnel_day(t.transition_time) AS day, t.from_stage AS stage,
       funnel_bucket(greatest(0, extract(epoch FROM t.transition_time - t.from_enter_time))::float8) AS bucket
  FROM transitions t
 WHERE t.from_stage IS NOT NULL;

-- Each entry e converts to every other stage at the lead's first later
-- entry into it (later: by time, then id, as the report over transitions).
CREATE VIEW funnel_conversion_facts AS
SELECT e.workspace_id, e.lead_id, e.to_stage AS from_stage, x.to_stage,
       funnel_day(e.transition_time) AS day, funnel_day(e.prev_enter_time) AS prev_day,
       funnel_bucket(extract(epoch FROM min(x.transition_time) - e.transition_time)::float8) AS bucket
  FROM transitions e
  JOIN transitions x
    ON x.workspace_id = e.workspace_id AND x.lead_id = e.lead_id AND x.to_stage <> e.to_stage
   AND (x.transition_time, x.id) > (e.transition_time, e.id)
 GROUP BY e.workspace_id, e.lead_id, e.id, x.to_stage;

-- funnel_apply adds (dir 1) or removes (dir -1) all of one lead's facts,
-- under the keys its lead row gives now. Erasure and merge remove a lead's
-- facts before its history or attribution changes, and add them back after.
-- +goose StatementBegin
CREATE FUNCTION funnel_apply(ws text, lead text, dir integer) RETURNS void
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    INSERT INTO funnel_moves AS r (workspace_id, source, campaign, day, stage, kind, prev_day, n)
    SELECT f.workspace_id, k.source, k.campaign, f.day, f.stage, f.kind, f.prev_day, dir * count(*)
      FROM funnel_move_facts f
      LEFT JOIN leads l ON l.workspace_id = f.workspace_id AND l.lead_id = f.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
     WHERE f.workspace_id = ws AND f.lead_id = lead
     GROUP BY 1, 2, 3, 4, 5, 6, 7
        ON CONFLICT (workspace_id, source, campaign, day, stage, kind, prev_day) DO UPDATE SET n = r.n + excluded.n;
    INSERT INTO funnel_stays AS r (workspace_id, source, campaign, day, stage, bucket, n)
    SELECT f.workspace_id, k.source, k.campaign, f.day, f.stage, f.bucket, dir * count(*)
      FROM funnel_stay_facts f
      LEFT JOIN leads l ON l.workspace_id = f.workspace_id AND l.lead_id = f.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
     WHERE f.workspace_id = ws AND f.lead_id = lead
     GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (workspace_id, source, campaign, day, stage, bucket) DO UPDATE SET n = r.n + excluded.n;
    INSERT INTO funnel_conversions AS r (workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket, n)
    SELECT f.workspace_id, k.source, k.campaign, f.from_stage, f.to_stage, f.day, f.prev_day, f.bucket, dir * count(*)
      FROM funnel_conversion_facts f
      LEFT JOIN leads l ON l.workspace_id = f.workspace_id AND l.lead_id = f.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
     WHERE f.workspace_id = ws AND f.lead_id = lead
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
        ON CONFLICT (workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket)
        DO UPDATE SET n = r.n + excluded.n;
END;
-- +goose StatementEnd

-- funnel_rebuild recomputes the rollups from the whole history: the
-- backfill below, and a repair tool.
-- +goose StatementBegin
CREATE FUNCTION funnel_rebuild() RETURNS void
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    DELETE FROM funnel_moves;
    DELETE FROM funnel_stays;
    DELETE FROM funnel_conversions;
    INSERT INTO funnel_moves (workspace_id, source, campaign, day, stage, kind, prev_day, n)
    SELECT f.workspace_id, k.source, k.campaign, f.day, f.stage, f.kind, f.prev_day, count(*)
      FROM funnel_move_facts f
      LEFT JOIN leads l ON l.workspace_id = f.workspace_id AND l.lead_id = f.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
     GROUP BY 1, 2, 3, 4, 5, 6, 7;
    INSERT INTO funnel_stays (workspace_id, source, campaign, day, stage, bucket, n)
    SELECT f.workspace_id, k.source, k.campaign, f.day, f.stage, f.bucket, count(*)
      FROM funnel_stay_facts f
      LEFT JOIN leads l ON l.workspace_id = f.workspace_id AND l.lead_id = f.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
     GROUP BY 1, 2, 3, 4, 5, 6;
    INSERT INTO funnel_conversions (workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket, n)
    SELECT f.workspace_id, k.source, k.campaign, f.from_stage, f.to_stage, f.day, f.prev_day, f.bucket, count(*)
      FROM funnel_conversion_facts f
      LEFT JOIN leads l ON l.workspace_id = f.workspace_id AND l.lead_id = f.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
END;
-- +goose StatementEnd

SELECT funnel_rebuild();

-- +goose Down
DROP FUNCTION funnel_rebuild();
DROP FUNCTION funnel_apply(text, text, integer);
DROP VIEW funnel_conversion_facts;
DROP VIEW funnel_stay_facts;
DROP VIEW funnel_move_facts;
DROP FUNCTION funnel_keys(text, text);
DROP FUNCTION funnel_bucket(float8);
DROP FUNCTION funnel_day(timestamptz);
DROP TABLE funnel_conversions;
DROP TABLE funnel_stays;
DROP TABLE funnel_moves;
