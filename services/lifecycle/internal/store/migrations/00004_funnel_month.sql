-- +goose Up
-- Month grains of funnel_stays and funnel_conversions. Their report queries
-- have no periods, so the whole months of a range are read from these, ~30
-- times fewer rows than its days, and only the partial months at its ends
-- from the day tables. Each row is the sum of the day rows of its month;
-- they are kept in the same statements as the day rows (countTransition,
-- funnel_apply, funnel_rebuild).

-- month is the first day of the UTC month.
CREATE TABLE funnel_stays_monthly (
    workspace_id text NOT NULL,
    source       text NOT NULL,
    campaign     text NOT NULL,
    month        date NOT NULL,
    stage        stage NOT NULL,
    bucket       smallint NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (workspace_id, source, campaign, month, stage, bucket)
);

-- prev_day is kept when it is before month and is month otherwise: a whole
-- month is read only by ranges starting on or before it, for which an
-- earlier entry in the same month never counts the lead.
CREATE TABLE funnel_conversions_monthly (
    workspace_id text NOT NULL,
    source       text NOT NULL,
    campaign     text NOT NULL,
    from_stage   stage NOT NULL,
    to_stage     stage NOT NULL,
    month        date NOT NULL,
    prev_day     date NOT NULL,
    bucket       smallint NOT NULL,
    n            bigint NOT NULL,
    PRIMARY KEY (workspace_id, source, campaign, from_stage, to_stage, month, prev_day, bucket)
);

-- funnel_month is the first day of d's month. Truncating a timestamp
-- (not the timestamptz a bare date would become) keeps it immutable, so
-- that it is inlined.
CREATE FUNCTION funnel_month(d date) RETURNS date
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_trunc('month', d::timestamp)::date;

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION funnel_apply(ws text, lead text, dir integer) RETURNS void
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
    INSERT INTO funnel_stays_monthly AS r (workspace_id, source, campaign, month, stage, bucket, n)
    SELECT f.workspace_id, k.source, k.campaign, funnel_month(f.day), f.stage, f.bucket, dir * count(*)
      FROM funnel_stay_facts f
      LEFT JOIN leads l ON l.workspace_id = f.workspace_id AND l.lead_id = f.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
     WHERE f.workspace_id = ws AND f.lead_id = lead
     GROUP BY 1, 2, 3, 4, 5, 6
        ON CONFLICT (workspace_id, source, campaign, month, stage, bucket) DO UPDATE SET n = r.n + excluded.n;
    INSERT INTO funnel_conversions AS r (workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket, n)
    SELECT f.workspace_id, k.source, k.campaign, f.from_stage, f.to_stage, f.day, f.prev_day, f.bucket, dir * count(*)
      FROM funnel_conversion_facts f
      LEFT JOIN leads l ON l.workspace_id = f.workspace_id AND l.lead_id = f.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
     WHERE f.workspace_id = ws AND f.lead_id = lead
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
        ON CONFLICT (workspace_id, source, campaign, from_stage, to_stage, day, prev_day, bucket)
        DO UPDATE SET n = r.n + excluded.n;
    INSERT INTO funnel_conversions_monthly AS r (workspace_id, source, campaign, from_stage, to_stage, month, prev_day, bucket, n)
    SELECT f.workspace_id, k.source, k.campaign, f.from_stage, f.to_stage, funnel_month(f.day),
           least(f.prev_day, funnel_month(f.day)), f.bucket, dir * count(*)
      FROM funnel_conversion_facts f
      LEFT JOIN leads l ON l.workspace_id = f.workspace_id AND l.lead_id = f.lead_id
     CROSS JOIN LATERAL funnel_keys(l.source, l.campaign) k
     WHERE f.workspace_id = ws AND f.lead_id = lead
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
        ON CONFLICT (workspace_id, source, campaign, from_stage, to_stage, month, prev_day, bucket)
        DO UPDATE SET n = r.n + excluded.n;
END;
-- +goose StatementEnd

-- funnel_rebuild_monthly recomputes the month grains from the day tables.
-- +goose StatementBegin
CREATE FUNCTION funnel_rebuild_monthly() RETURNS void
    LANGUAGE sql VOLATILE
BEGIN ATOMIC
    DELETE FROM funnel_stays_monthly;
    DELETE FROM funnel_conversions_monthly;
    INSERT INTO funnel_stays_monthly (workspace_id, source, campaign, month, stage, bucket, n)
    SELECT workspace_id, source, campaign, funnel_month(day), stage, bucket, sum(n)
      FROM funnel_stays
     GROUP BY 1, 2, 3, 4, 5, 6;
    INSERT INTO funnel_conversions_monthly (workspace_id, source, campaign, from_stage, to_stage, month, prev_day, bucket, n)
    SELECT workspace_id, source, campaign, from_stage, to_stage, funnel_month(day), least(prev_day, funnel_month(day)),
           bucket, sum(n)
      FROM funnel_conversions
     GROUP BY 1, 2, 3, 4, 5, 6, 7, 8;
END;
-- +goose StatementEnd

-- funnel_rebuild now rebuilds the month grains too.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION funnel_rebuild() RETURNS void
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
    SELECT funnel_rebuild_monthly();
END;
-- +goose StatementEnd

SELECT funnel_rebuild_monthly();

-- +goose Down
-- funnel_apply and funnel_rebuild as 00002 made them.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION funnel_apply(ws text, lead text, dir integer) RETURNS void
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

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION funnel_rebuild() RETURNS void
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

DROP FUNCTION funnel_rebuild_monthly();
DROP FUNCTION funnel_month(date);
DROP TABLE funnel_conversions_monthly;
DROP TABLE funnel_stays_monthly;
