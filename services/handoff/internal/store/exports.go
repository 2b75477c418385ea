package store

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

const scheduleCols = `
workspace_id, id, display_name, frequency, weekday, day_of_month, hour, time_zone, states, disabled,
next_run_time, last_run_time, create_time, update_time, version`

type scheduleRow struct {
	WorkspaceID string     `db:"workspace_id"`
	ID          string     `db:"id"`
	DisplayName string     `db:"display_name"`
	Frequency   int        `db:"frequency"`
	Weekday     int        `db:"weekday"`
	DayOfMonth  int        `db:"day_of_month"`
	Hour        int        `db:"hour"`
	TimeZone    string     `db:"time_zone"`
	States      []int16    `db:"states"`
	Disabled    bool       `db:"disabled"`
	NextRunTime time.Time  `db:"next_run_time"`
	LastRunTime *time.Time `db:"last_run_time"`
	CreateTime  time.Time  `db:"create_time"`
	UpdateTime  time.Time  `db:"update_time"`
	Version     int64      `db:"version"`
}

func (r scheduleRow) toDomain() handoff.ExportSchedule {
	s := handoff.ExportSchedule{
		Workspace: r.WorkspaceID, ID: r.ID, DisplayName: r.DisplayName, Frequency: handoff.Frequency(r.Frequency),
		Weekday: time.Weekday(r.Weekday), DayOfMonth: r.DayOfMonth, Hour: r.Hour, TimeZone: r.TimeZone,
		Disabled: r.Disabled, NextRun: r.NextRunTime, LastRun: r.LastRunTime,
		CreateTime: r.CreateTime, UpdateTime: r.UpdateTime, Version: r.Version,
	}
	for _, st := range r.States {
		s.States = append(s.States, handoff.State(st))
	}
	return s
}

func states(ss []handoff.State) []int16 {
	out := make([]int16, 0, len(ss))
	for _, s := range ss {
		out = append(out, int16(s))
	}
	return out
}

func (s *Store) querySchedules(ctx context.Context, q string, args ...any) ([]handoff.ExportSchedule, error) {
	rows, err := s.q().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[scheduleRow])
	if err != nil {
		return nil, err
	}
	out := make([]handoff.ExportSchedule, len(rs))
	for i, r := range rs {
		out[i] = r.toDomain()
	}
	return out, nil
}

// CreateSchedule implements handoff.ExportStore.
func (s *Store) CreateSchedule(ctx context.Context, sch handoff.ExportSchedule, requestID string) (handoff.ExportSchedule, error) {
	if requestID != "" {
		rs, err := s.querySchedules(ctx, `SELECT `+scheduleCols+` FROM export_schedules
 WHERE workspace_id = $1 AND request_id = $2`, sch.Workspace, requestID)
		if err != nil || len(rs) > 0 {
			if len(rs) > 0 {
				return rs[0], nil
			}
			return handoff.ExportSchedule{}, err
		}
	}
	const q = `
INSERT INTO export_schedules (workspace_id, id, display_name, frequency, weekday, day_of_month, hour, time_zone,
                              states, disabled, next_run_time, request_id, create_time, update_time, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, 1)`
	_, err := s.q().Exec(ctx, q, sch.Workspace, sch.ID, sch.DisplayName, int(sch.Frequency), int(sch.Weekday),
		sch.DayOfMonth, sch.Hour, sch.TimeZone, states(sch.States), sch.Disabled, sch.NextRun, requestID, sch.CreateTime)
	if postgres.IsUniqueViolation(err) {
		return handoff.ExportSchedule{}, handoff.ErrScheduleExists
	}
	return sch, err
}

// GetSchedule implements handoff.ExportStore.
func (s *Store) GetSchedule(ctx context.Context, workspace, id string) (handoff.ExportSchedule, error) {
	rs, err := s.querySchedules(ctx, `SELECT `+scheduleCols+` FROM export_schedules
 WHERE workspace_id = $1 AND id = $2`, workspace, id)
	if err != nil {
		return handoff.ExportSchedule{}, err
	}
	if len(rs) == 0 {
		return handoff.ExportSchedule{}, handoff.ErrScheduleNotFound
	}
	return rs[0], nil
}

// ListSchedules implements handoff.ExportStore.
func (s *Store) ListSchedules(ctx context.Context, workspace string, after *handoff.NameCursor, limit int) ([]handoff.ExportSchedule, error) {
	var afterID string
	if after != nil {
		afterID = after.ID
	}
	return s.querySchedules(ctx, `SELECT `+scheduleCols+` FROM export_schedules
 WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3`, workspace, afterID, limit)
}

// UpdateSchedule implements handoff.ExportStore.
func (s *Store) UpdateSchedule(ctx context.Context, sch handoff.ExportSchedule, at time.Time) (handoff.ExportSchedule, error) {
	const q = `
UPDATE export_schedules
   SET display_name = $4, frequency = $5, weekday = $6, day_of_month = $7, hour = $8, time_zone = $9,
       states = $10, disabled = $11, next_run_time = $12, update_time = $13, version = version + 1
 WHERE workspace_id = $1 AND id = $2 AND version = $3`
	tag, err := s.q().Exec(ctx, q, sch.Workspace, sch.ID, sch.Version, sch.DisplayName, int(sch.Frequency),
		int(sch.Weekday), sch.DayOfMonth, sch.Hour, sch.TimeZone, states(sch.States), sch.Disabled, sch.NextRun, at)
	if err != nil {
		return handoff.ExportSchedule{}, err
	}
	if tag.RowsAffected() == 0 {
		return handoff.ExportSchedule{}, handoff.ErrStaleEtag
	}
	sch.Version++
	sch.UpdateTime = at
	return sch, nil
}

// DeleteSchedule implements handoff.ExportStore; exports cascade.
func (s *Store) DeleteSchedule(ctx context.Context, workspace, id string, version int64) error {
	const q = `DELETE FROM export_schedules WHERE workspace_id = $1 AND id = $2 AND version = $3`
	tag, err := s.q().Exec(ctx, q, workspace, id, version)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return handoff.ErrStaleEtag
	}
	return nil
}

// ClaimDueSchedule implements handoff.ExportStore.
func (s *Store) ClaimDueSchedule(ctx context.Context, now time.Time) (handoff.ExportSchedule, bool, error) {
	rs, err := s.querySchedules(ctx, `SELECT `+scheduleCols+` FROM export_schedules
 WHERE NOT disabled AND next_run_time <= $1
 ORDER BY next_run_time LIMIT 1
   FOR UPDATE SKIP LOCKED`, now)
	if err != nil || len(rs) == 0 {
		return handoff.ExportSchedule{}, false, err
	}
	return rs[0], true, nil
}

// MarkScheduleRun implements handoff.ExportStore.
func (s *Store) MarkScheduleRun(ctx context.Context, workspace, id string, last, next time.Time) error {
	const q = `UPDATE export_schedules SET last_run_time = $3, next_run_time = $4 WHERE workspace_id = $1 AND id = $2`
	_, err := s.q().Exec(ctx, q, workspace, id, last, next)
	return err
}

// ExportRows implements handoff.ExportStore.
func (s *Store) ExportRows(ctx context.Context, workspace string, start, end time.Time, ss []handoff.State) ([]handoff.Handoff, map[string]string, error) {
	hs, err := s.queryHandoffs(ctx, `SELECT `+handoffCols+` FROM handoffs
 WHERE workspace_id = $1 AND create_time >= $2 AND create_time < $3
   AND (cardinality($4::smallint[]) = 0 OR state = ANY($4))
 ORDER BY create_time, id`, workspace, start, end, states(ss))
	if err != nil {
		return nil, nil, err
	}
	const q = `SELECT id, external_id FROM owners WHERE workspace_id = $1 AND external_id <> ''`
	rows, err := s.q().Query(ctx, q, workspace)
	if err != nil {
		return nil, nil, err
	}
	external := map[string]string{}
	var id, ext string
	_, err = pgx.ForEachRow(rows, []any{&id, &ext}, func() error {
		external[id] = ext
		return nil
	})
	return hs, external, err
}

const exportCols = `
workspace_id, schedule_id, id, state, period_start_time, period_end_time, row_count, size_bytes,
error_message, create_time, complete_time, expire_time`

type exportRow struct {
	WorkspaceID     string     `db:"workspace_id"`
	ScheduleID      string     `db:"schedule_id"`
	ID              string     `db:"id"`
	State           int        `db:"state"`
	PeriodStartTime time.Time  `db:"period_start_time"`
	PeriodEndTime   time.Time  `db:"period_end_time"`
	RowCount        int64      `db:"row_count"`
	SizeBytes       int64      `db:"size_bytes"`
	ErrorMessage    string     `db:"error_message"`
	CreateTime      time.Time  `db:"create_time"`
	CompleteTime    *time.Time `db:"complete_time"`
	ExpireTime      time.Time  `db:"expire_time"`
}

func (s *Store) queryExports(ctx context.Context, q string, args ...any) ([]handoff.Export, error) {
	rows, err := s.q().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByName[exportRow])
	if err != nil {
		return nil, err
	}
	out := make([]handoff.Export, len(rs))
	for i, r := range rs {
		out[i] = handoff.Export{
			Workspace: r.WorkspaceID, Schedule: r.ScheduleID, ID: r.ID, State: handoff.ExportState(r.State),
			PeriodStart: r.PeriodStartTime, PeriodEnd: r.PeriodEndTime, RowCount: r.RowCount,
			SizeBytes: r.SizeBytes, ErrorMessage: r.ErrorMessage, CreateTime: r.CreateTime,
			CompleteTime: r.CompleteTime, ExpireTime: r.ExpireTime,
		}
	}
	return out, nil
}

// InsertExport implements handoff.ExportStore.
func (s *Store) InsertExport(ctx context.Context, e handoff.Export, data []byte, requestID string) error {
	const q = `
INSERT INTO exports (workspace_id, schedule_id, id, state, period_start_time, period_end_time, row_count,
                     size_bytes, data, error_message, request_id, create_time, complete_time, expire_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`
	_, err := s.q().Exec(ctx, q, e.Workspace, e.Schedule, e.ID, int(e.State), e.PeriodStart, e.PeriodEnd,
		e.RowCount, e.SizeBytes, data, e.ErrorMessage, requestID, e.CreateTime, e.CompleteTime, e.ExpireTime)
	return err
}

// ExportByRequest implements handoff.ExportStore.
func (s *Store) ExportByRequest(ctx context.Context, workspace, schedule, requestID string) (handoff.Export, bool, error) {
	es, err := s.queryExports(ctx, `SELECT `+exportCols+` FROM exports
 WHERE workspace_id = $1 AND schedule_id = $2 AND request_id = $3`, workspace, schedule, requestID)
	if err != nil || len(es) == 0 {
		return handoff.Export{}, false, err
	}
	return es[0], true, nil
}

// GetExport implements handoff.ExportStore; expired exports are gone.
func (s *Store) GetExport(ctx context.Context, workspace, schedule, id string) (handoff.Export, error) {
	es, err := s.queryExports(ctx, `SELECT `+exportCols+` FROM exports
 WHERE workspace_id = $1 AND schedule_id = $2 AND id = $3`, workspace, schedule, id)
	if err != nil {
		return handoff.Export{}, err
	}
	if len(es) == 0 {
		return handoff.Export{}, handoff.ErrExportNotFound
	}
	return es[0], nil
}

// ExportData implements handoff.ExportStore.
func (s *Store) ExportData(ctx context.Context, workspace, schedule, id string) ([]byte, error) {
	const q = `SELECT data FROM exports WHERE workspace_id = $1 AND schedule_id = $2 AND id = $3`
	var data []byte
	err := s.q().QueryRow(ctx, q, workspace, schedule, id).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, handoff.ErrExportNotFound
	}
	return data, err
}

// ListExports implements handoff.ExportStore.
func (s *Store) ListExports(ctx context.Context, workspace, schedule string, after *handoff.TimeCursor, limit int) ([]handoff.Export, error) {
	var afterTime *time.Time
	var afterID string
	if after != nil {
		afterTime, afterID = &after.Time, after.ID
	}
	return s.queryExports(ctx, `SELECT `+exportCols+` FROM exports
 WHERE workspace_id = $1 AND ($2 = '' OR schedule_id = $2)
   AND ($3::timestamptz IS NULL OR (create_time, id) < ($3, $4))
 ORDER BY create_time DESC, id DESC
 LIMIT $5`, workspace, schedule, afterTime, afterID, limit)
}

// DeleteExpiredExports implements handoff.ExportStore.
func (s *Store) DeleteExpiredExports(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.q().Exec(ctx, `DELETE FROM exports WHERE expire_time <= $1`, now)
	if err != nil {
		return 0, err
	}
	return int(tag.RowsAffected()), nil
}
