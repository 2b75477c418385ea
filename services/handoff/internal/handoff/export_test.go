package handoff_test

import (
	"strings"
	"testing"
	"time"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

func TestScheduleNext(t *testing.T) {
	mon9 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC) // a Monday
	for _, tc := range []struct {
		name string
		s    handoff.ExportSchedule
		from time.Time
		want time.Time
	}{
		{"daily later today", handoff.ExportSchedule{Frequency: handoff.Daily, Hour: 18}, mon9, time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)},
		{"daily tomorrow", handoff.ExportSchedule{Frequency: handoff.Daily, Hour: 9}, mon9, time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)},
		{"weekly friday", handoff.ExportSchedule{Frequency: handoff.Weekly, Weekday: time.Friday, Hour: 7}, mon9, time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC)},
		{"weekly next monday", handoff.ExportSchedule{Frequency: handoff.Weekly, Weekday: time.Monday, Hour: 8}, mon9, time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)},
		{"monthly", handoff.ExportSchedule{Frequency: handoff.Monthly, DayOfMonth: 1, Hour: 6}, mon9, time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC)},
		{"in a time zone", handoff.ExportSchedule{Frequency: handoff.Daily, Hour: 8, TimeZone: "America/New_York"}, mon9, time.Date(2026, 11, 23, 13, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.Next(tc.from); !got.Equal(tc.want) {
				t.Fatalf("Next = %v, want %v", got.UTC(), tc.want)
			}
		})
	}
}

func TestWriteCSV(t *testing.T) {
	created := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	data, err := handoff.WriteCSV([]handoff.Handoff{{
		ID: "h1", Lead: "l1", State: handoff.StateRejected, Owner: "anna", Team: "dach",
		Routing: handoff.Routing{Rule: "dach"}, CreateTime: created, RejectTime: &created,
		RejectReason: "=HYPERLINK(\"x\"), said \"no\"", RoutedLead: &handoffv1.RoutingLead{TotalScore: 70, Grade: "B"},
	}}, map[string]string{"anna": "crm-1"})
	if err != nil {
		t.Fatal(err)
	}
	want := "handoff,lead,state,owner,owner_external_id,team,rule,create_time,due_time,accept_time,reject_time,reject_reason,total_score,grade\r\n" +
		`handoffs/h1,leads/l1,REJECTED,owners/anna,crm-1,teams/dach,dach,2026-11-23T09:00:00Z,,,2026-11-23T09:00:00Z,"'=HYPERLINK(""x""), said ""no""",70,B` + "\r\n"
	if string(data) != want {
		t.Fatalf("csv =\n%q\nwant\n%q", data, want)
	}
	if !strings.HasSuffix(string(data), "\r\n") {
		t.Fatal("rows must end with CRLF (RFC 4180)")
	}
}
