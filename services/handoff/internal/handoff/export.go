package handoff

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// Frequency is how often a schedule runs; the values match
// leadflow.handoff.v1.ExportSchedule.Frequency.
type Frequency int

// The frequencies.
const (
	Daily   Frequency = 1
	Weekly  Frequency = 2
	Monthly Frequency = 3
)

// ExportRetention is how long an export's file is kept.
const ExportRetention = 90 * 24 * time.Hour

// ExportSchedule produces a CSV of handed-off leads periodically.
type ExportSchedule struct {
	Workspace   string
	ID          string
	DisplayName string
	Frequency   Frequency
	Weekday     time.Weekday
	DayOfMonth  int
	Hour        int
	TimeZone    string
	States      []State
	Disabled    bool
	NextRun     time.Time
	// LastRun is the end of the period the last scheduled run covered.
	LastRun    *time.Time
	CreateTime time.Time
	UpdateTime time.Time
	Version    int64
}

func (s ExportSchedule) location() *time.Location {
	return WorkingHours{TimeZone: s.TimeZone}.Location()
}

// Next returns the first run time strictly after t.
func (s ExportSchedule) Next(t time.Time) time.Time {
	loc := s.location()
	local := t.In(loc)
	y, m, d := local.Date()
	day := max(s.DayOfMonth, 1)
	for i := range 400 {
		var c time.Time
		switch s.Frequency {
		case Monthly:
			c = time.Date(y, m+time.Month(i), day, s.Hour, 0, 0, 0, loc)
		default:
			c = time.Date(y, m, d+i, s.Hour, 0, 0, 0, loc)
			if s.Frequency == Weekly && c.Weekday() != s.Weekday {
				continue
			}
		}
		if c.After(t) {
			return c
		}
	}
	return t.Add(24 * time.Hour) // unreachable with a valid schedule
}

// period is one run's length, for the first run's start.
func (s ExportSchedule) period() time.Duration {
	switch s.Frequency {
	case Weekly:
		return 7 * 24 * time.Hour
	case Monthly:
		return 30 * 24 * time.Hour
	}
	return 24 * time.Hour
}

// ExportState is an export's state; the values match
// leadflow.handoff.v1.Export.State.
type ExportState int

// The export states.
const (
	ExportRunning   ExportState = 1
	ExportSucceeded ExportState = 2
	ExportFailed    ExportState = 3
)

// Export is one CSV produced by a schedule.
type Export struct {
	Workspace    string
	Schedule     string
	ID           string
	State        ExportState
	PeriodStart  time.Time
	PeriodEnd    time.Time
	RowCount     int64
	SizeBytes    int64
	ErrorMessage string
	CreateTime   time.Time
	CompleteTime *time.Time
	ExpireTime   time.Time
}

// ExportStore persists export schedules and their exports.
type ExportStore interface {
	CreateSchedule(ctx context.Context, s ExportSchedule, requestID string) (ExportSchedule, error)
	GetSchedule(ctx context.Context, workspace, id string) (ExportSchedule, error)
	ListSchedules(ctx context.Context, workspace string, after *NameCursor, limit int) ([]ExportSchedule, error)
	// UpdateSchedule writes s if its stored version is still s.Version.
	UpdateSchedule(ctx context.Context, s ExportSchedule, at time.Time) (ExportSchedule, error)
	DeleteSchedule(ctx context.Context, workspace, id string, version int64) error
	// ClaimDueSchedule locks one enabled schedule, in any workspace, due at
	// or before now, skipping rows other workers hold.
	ClaimDueSchedule(ctx context.Context, now time.Time) (ExportSchedule, bool, error)
	// MarkScheduleRun records a scheduled run; it leaves the etag alone.
	MarkScheduleRun(ctx context.Context, workspace, id string, last, next time.Time) error
	// ExportRows returns the handoffs created in [start, end) in one of
	// states (all when empty), oldest first, with their owners' CRM ids.
	ExportRows(ctx context.Context, workspace string, start, end time.Time, states []State) ([]Handoff, map[string]string, error)
	InsertExport(ctx context.Context, e Export, data []byte, requestID string) error
	ExportByRequest(ctx context.Context, workspace, schedule, requestID string) (Export, bool, error)
	GetExport(ctx context.Context, workspace, schedule, id string) (Export, error)
	ExportData(ctx context.Context, workspace, schedule, id string) ([]byte, error)
	// ListExports pages through exports, newest first; schedule "" for all.
	ListExports(ctx context.Context, workspace, schedule string, after *TimeCursor, limit int) ([]Export, error)
	DeleteExpiredExports(ctx context.Context, now time.Time) (int, error)
}

func (s *Service) checkSchedule(sch *ExportSchedule) error {
	if sch.TimeZone == "" {
		sch.TimeZone = "UTC"
	}
	if _, err := time.LoadLocation(sch.TimeZone); err != nil {
		return apperr.InvalidArgument("invalid export schedule",
			apperr.Field("export_schedule.time_zone", "unknown IANA time zone"))
	}
	if sch.DayOfMonth == 0 {
		sch.DayOfMonth = 1
	}
	return nil
}

// CreateSchedule sets up a periodic export; a retry with the same
// requestID returns the original.
func (s *Service) CreateSchedule(ctx context.Context, sch ExportSchedule, requestID string) (ExportSchedule, error) {
	now := s.Now()
	if err := s.checkSchedule(&sch); err != nil {
		return ExportSchedule{}, err
	}
	if sch.ID == "" {
		sch.ID = shortID()
	}
	sch.NextRun = sch.Next(now)
	sch.CreateTime, sch.UpdateTime, sch.Version = now, now, 1
	return s.store.CreateSchedule(ctx, sch, requestID)
}

// GetSchedule returns a schedule.
func (s *Service) GetSchedule(ctx context.Context, workspace, id string) (ExportSchedule, error) {
	return s.store.GetSchedule(ctx, workspace, id)
}

// ListSchedules pages through schedules by id.
func (s *Service) ListSchedules(ctx context.Context, workspace string, after *NameCursor, limit int) ([]ExportSchedule, error) {
	return s.store.ListSchedules(ctx, workspace, after, limit)
}

// UpdateSchedule applies change, guarded by etag, and reschedules.
func (s *Service) UpdateSchedule(ctx context.Context, workspace, id, etag string, change func(*ExportSchedule)) (ExportSchedule, error) {
	now := s.Now()
	var out ExportSchedule
	err := s.store.InTx(ctx, func(tx Tx) error {
		sch, err := tx.GetSchedule(ctx, workspace, id)
		if err != nil {
			return err
		}
		if err := checkEtag(etag, sch.Version); err != nil {
			return err
		}
		change(&sch)
		sch.Workspace, sch.ID = workspace, id
		if err := s.checkSchedule(&sch); err != nil {
			return err
		}
		sch.NextRun = sch.Next(now)
		out, err = tx.UpdateSchedule(ctx, sch, now)
		return err
	})
	return out, err
}

// DeleteSchedule removes a schedule and its exports.
func (s *Service) DeleteSchedule(ctx context.Context, workspace, id, etag string) error {
	sch, err := s.store.GetSchedule(ctx, workspace, id)
	if err != nil {
		return err
	}
	if err := checkEtag(etag, sch.Version); err != nil {
		return err
	}
	return s.store.DeleteSchedule(ctx, workspace, id, sch.Version)
}

// RunSchedule produces an export now, covering the handoffs since the last
// scheduled run, without moving the schedule.
func (s *Service) RunSchedule(ctx context.Context, workspace, id, requestID string) (Export, error) {
	now := s.Now()
	var out Export
	err := s.store.InTx(ctx, func(tx Tx) error {
		if requestID != "" {
			if e, ok, err := tx.ExportByRequest(ctx, workspace, id, requestID); err != nil || ok {
				out = e
				return err
			}
		}
		sch, err := tx.GetSchedule(ctx, workspace, id)
		if err != nil {
			return err
		}
		start := now.Add(-sch.period())
		if sch.LastRun != nil {
			start = *sch.LastRun
		}
		out, err = s.produce(ctx, tx, sch, start, now, now, requestID)
		return err
	})
	return out, err
}

// produce writes the export of sch for [start, end).
func (s *Service) produce(ctx context.Context, tx Tx, sch ExportSchedule, start, end, now time.Time, requestID string) (Export, error) {
	rows, external, err := tx.ExportRows(ctx, sch.Workspace, start, end, sch.States)
	if err != nil {
		return Export{}, err
	}
	data, err := WriteCSV(rows, external)
	if err != nil {
		return Export{}, err
	}
	e := Export{
		Workspace: sch.Workspace, Schedule: sch.ID, ID: newID(), State: ExportSucceeded,
		PeriodStart: start, PeriodEnd: end, RowCount: int64(len(rows)), SizeBytes: int64(len(data)),
		CreateTime: now, CompleteTime: &now, ExpireTime: now.Add(ExportRetention),
	}
	return e, tx.InsertExport(ctx, e, data, requestID)
}

// RunDueExports is one pass of the export schedules: every schedule due at
// the clock's now produces its export and moves to its next run, in one
// transaction (so a run happens once across replicas and is not lost while
// the service is down: the next pass covers the whole gap). Expired exports
// are deleted. It returns how many exports it produced.
func (s *Service) RunDueExports(ctx context.Context) (int, error) {
	now := s.Now()
	if _, err := s.store.DeleteExpiredExports(ctx, now); err != nil {
		return 0, fmt.Errorf("delete expired exports: %w", err)
	}
	n := 0
	for n < maxFiresPerPass {
		ran := false
		err := s.store.InTx(ctx, func(tx Tx) error {
			sch, ok, err := tx.ClaimDueSchedule(ctx, now)
			if err != nil || !ok {
				return err
			}
			ran = true
			end := sch.NextRun
			start := end.Add(-sch.period())
			if sch.LastRun != nil {
				start = *sch.LastRun
			}
			if _, err := s.produce(ctx, tx, sch, start, end, now, ""); err != nil {
				return err
			}
			return tx.MarkScheduleRun(ctx, sch.Workspace, sch.ID, end, sch.Next(now))
		})
		if err != nil {
			return n, fmt.Errorf("run export: %w", err)
		}
		if !ran {
			break
		}
		n++
	}
	return n, nil
}

// ListExports pages through exports, newest first; schedule "" for all.
func (s *Service) ListExports(ctx context.Context, workspace, schedule string, after *TimeCursor, limit int) ([]Export, error) {
	return s.store.ListExports(ctx, workspace, schedule, after, limit)
}

// Download returns an export's CSV: NOT_FOUND once expired,
// FAILED_PRECONDITION unless it succeeded.
func (s *Service) Download(ctx context.Context, workspace, schedule, id string) ([]byte, error) {
	e, err := s.store.GetExport(ctx, workspace, schedule, id)
	if err != nil {
		return nil, err
	}
	if !s.Now().Before(e.ExpireTime) {
		return nil, ErrExportNotFound
	}
	if e.State != ExportSucceeded {
		return nil, ErrExportNotReady
	}
	return s.store.ExportData(ctx, workspace, schedule, id)
}

// ExportColumns are the CSV's columns, in order.
var ExportColumns = []string{
	"handoff", "lead", "state", "owner", "owner_external_id", "team", "rule", "create_time", "due_time",
	"accept_time", "reject_time", "reject_reason", "total_score", "grade",
}

var stateNames = map[State]string{
	StateQueued: "QUEUED", StateAssigned: "ASSIGNED", StateEscalated: "ESCALATED", StateAccepted: "ACCEPTED",
	StateRejected: "REJECTED", StateReturned: "RETURNED", StateCancelled: "CANCELLED",
}

// WriteCSV renders handoffs as RFC 4180 CSV (CRLF line ends, a header row).
func WriteCSV(rows []Handoff, externalIDs map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.UseCRLF = true
	if err := w.Write(ExportColumns); err != nil {
		return nil, err
	}
	ts := func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	name := func(collection, id string) string {
		if id == "" {
			return ""
		}
		return collection + "/" + id
	}
	for _, h := range rows {
		var score, grade string
		if h.RoutedLead != nil {
			score, grade = strconv.FormatInt(h.RoutedLead.GetTotalScore(), 10), h.RoutedLead.GetGrade()
		}
		create := h.CreateTime
		if err := w.Write([]string{
			name("handoffs", h.ID), name("leads", h.Lead), stateNames[h.State], name("owners", h.Owner),
			externalIDs[h.Owner], name("teams", h.Team), h.Routing.Rule, ts(&create), ts(h.DueTime),
			ts(h.AcceptTime), ts(h.RejectTime), defuse(h.RejectReason), score, defuse(grade),
		}); err != nil {
			return nil, err
		}
	}
	w.Flush()
	return buf.Bytes(), w.Error()
}

// defuse keeps free text from being read as a formula by spreadsheets.
func defuse(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
