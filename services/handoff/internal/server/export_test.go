package server_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
)

func TestWeeklyExport(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	created, err := f.client.CreateExportSchedule(f.ctx, &handoffv1.CreateExportScheduleRequest{
		ExportScheduleId: "weekly",
		ExportSchedule: &handoffv1.ExportSchedule{
			Frequency: handoffv1.ExportSchedule_FREQUENCY_WEEKLY, Weekday: handoffv1.Weekday_WEEKDAY_MONDAY, Hour: 8,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	sch := created.GetExportSchedule()
	if want := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC); !sch.GetNextRunTime().AsTime().Equal(want) {
		t.Fatalf("next run = %v, want %v", sch.GetNextRunTime().AsTime(), want)
	}

	accepted := f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})
	if _, err := f.client.AcceptHandoff(f.ctx, &handoffv1.AcceptHandoffRequest{Name: accepted.GetName()}); err != nil {
		t.Fatal(err)
	}
	f.qualify("lead-2", &eventsv1.LeadAttributes{Country: "US"})

	run := func(want int) {
		t.Helper()
		n, err := f.app.Service.RunDueExports(context.Background())
		if err != nil || n != want {
			t.Fatalf("export pass produced %d, %v; want %d", n, err, want)
		}
	}
	run(0)
	f.clock.Advance(7 * 24 * time.Hour)
	run(1)
	run(0)

	list, err := f.client.ListExports(f.ctx, &handoffv1.ListExportsRequest{Parent: "exportSchedules/-"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetExports()) != 1 {
		t.Fatalf("exports = %v", list.GetExports())
	}
	e := list.GetExports()[0]
	if e.GetState() != handoffv1.Export_STATE_SUCCEEDED || e.GetRowCount() != 2 ||
		!e.GetPeriodEndTime().AsTime().Equal(time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)) {
		t.Fatalf("export = %v", e)
	}
	dl, err := f.client.DownloadExport(f.ctx, &handoffv1.DownloadExportRequest{Name: e.GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if dl.GetBody().GetContentType() != "text/csv; charset=utf-8" || int64(len(dl.GetBody().GetData())) != e.GetSizeBytes() {
		t.Fatalf("download = %q, %d bytes", dl.GetBody().GetContentType(), len(dl.GetBody().GetData()))
	}
	records, err := csv.NewReader(bytes.NewReader(dl.GetBody().GetData())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 3 || records[0][0] != "handoff" || records[1][0] != accepted.GetName() ||
		records[1][2] != "ACCEPTED" || records[1][3] != "owners/anna" || records[1][4] != "crm-anna" || records[2][2] != "ASSIGNED" {
		t.Fatalf("csv = %v", records)
	}

	_, err = f.client.DownloadExport(f.other, &handoffv1.DownloadExportRequest{Name: e.GetName()})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("another workspace's download: code = %v, want NotFound", status.Code(err))
	}

	t.Run("run now covers the handoffs since the last run, once per request id", func(t *testing.T) {
		f.qualify("lead-3", &eventsv1.LeadAttributes{Country: "AT"})
		f.clock.Advance(time.Minute) // periods are half-open: [start, now)
		req := &handoffv1.RunExportScheduleRequest{Name: sch.GetName(), RequestId: "now-1"}
		a, err := f.client.RunExportSchedule(f.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.client.RunExportSchedule(f.ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if a.GetExport().GetName() != b.GetExport().GetName() || a.GetExport().GetRowCount() != 1 {
			t.Fatalf("run now = %v then %v", a.GetExport(), b.GetExport())
		}
		got, err := f.client.GetExportSchedule(f.ctx, &handoffv1.GetExportScheduleRequest{Name: sch.GetName()})
		if err != nil {
			t.Fatal(err)
		}
		if !got.GetExportSchedule().GetLastRunTime().AsTime().Equal(e.GetPeriodEndTime().AsTime()) {
			t.Fatalf("run now moved the schedule: %v", got.GetExportSchedule())
		}
	})

	t.Run("expired exports are gone", func(t *testing.T) {
		f.clock.Advance(91 * 24 * time.Hour)
		run(1) // the missed weeks in one export
		_, err := f.client.DownloadExport(f.ctx, &handoffv1.DownloadExportRequest{Name: e.GetName()})
		if status.Code(err) != codes.NotFound {
			t.Fatalf("expired download: code = %v, want NotFound", status.Code(err))
		}
	})
}
