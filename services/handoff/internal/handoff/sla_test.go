package handoff_test

import (
	"testing"
	"time"

	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

func TestDeadline(t *testing.T) {
	weekdays := []time.Weekday{time.Monday, time.Tuesday, time.Wednesday, time.Thursday, time.Friday}
	berlin := handoff.WorkingHours{Enabled: true, TimeZone: "Europe/Berlin", Weekdays: weekdays, StartHour: 9, EndHour: 17}
	utc := handoff.WorkingHours{Enabled: true, TimeZone: "UTC", Weekdays: weekdays, StartHour: 9, EndHour: 17}
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name  string
		wh    handoff.WorkingHours
		start string
		d     time.Duration
		want  string
	}{
		{"off: wall-clock time", handoff.WorkingHours{}, "2026-11-27T16:00:00Z", 4 * time.Hour, "2026-11-27T20:00:00Z"},
		{"within one day", utc, "2026-11-23T10:00:00Z", 4 * time.Hour, "2026-11-23T14:00:00Z"},
		{"spills into the next day", utc, "2026-11-23T15:00:00Z", 4 * time.Hour, "2026-11-24T11:00:00Z"},
		{"friday evening to monday", utc, "2026-11-27T16:00:00Z", 4 * time.Hour, "2026-11-30T12:00:00Z"},
		{"before opening starts at opening", utc, "2026-11-23T06:00:00Z", time.Hour, "2026-11-23T10:00:00Z"},
		{"weekend starts monday", utc, "2026-11-28T12:00:00Z", 8 * time.Hour, "2026-11-30T17:00:00Z"},
		{"ends exactly at closing", utc, "2026-11-23T13:00:00Z", 4 * time.Hour, "2026-11-23T17:00:00Z"},
		{"local time zone", berlin, "2026-11-23T07:00:00Z", 2 * time.Hour, "2026-11-23T10:00:00Z"},        // 08:00 CET → 09-11 CET
		{"across daylight saving", berlin, "2026-03-27T15:00:00Z", 2 * time.Hour, "2026-03-30T08:00:00Z"}, // Fri 16:00 CET; Mon 10:00 CEST
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.wh.Deadline(at(tc.start), tc.d)
			if !got.Equal(at(tc.want)) {
				t.Fatalf("Deadline(%s, %v) = %s, want %s", tc.start, tc.d, got.UTC().Format(time.RFC3339), tc.want)
			}
		})
	}
}

func TestPeriodStart(t *testing.T) {
	now := time.Date(2026, 11, 26, 15, 30, 0, 0, time.UTC) // a Thursday
	for _, tc := range []struct {
		p    handoff.CapacityPeriod
		want time.Time
	}{
		{handoff.PeriodDay, time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)},
		{handoff.PeriodWeek, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)},
		{handoff.PeriodMonth, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if got := handoff.PeriodStart(tc.p, now, time.UTC); !got.Equal(tc.want) {
			t.Errorf("PeriodStart(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	sunday := time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC)
	if got := handoff.PeriodStart(handoff.PeriodWeek, sunday, time.UTC); !got.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("week of a Sunday starts %v, want the Monday before", got)
	}
}
