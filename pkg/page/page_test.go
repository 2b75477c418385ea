package page

import (
	"errors"
	"testing"
	"time"
)

type cursor struct {
	Time time.Time `json:"t"`
	ID   string    `json:"i"`
}

func TestSize(t *testing.T) {
	for _, tc := range []struct {
		in   int32
		want int
	}{{0, DefaultSize}, {-5, DefaultSize}, {10, 10}, {MaxSize, MaxSize}, {MaxSize + 1, MaxSize}} {
		if got := Size(tc.in); got != tc.want {
			t.Errorf("Size(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestTokenRoundTrip(t *testing.T) {
	want := cursor{Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), ID: "abc"}
	tok := Encode(want, "source=web")
	got, ok, err := Decode[cursor](tok, "source=web")
	if err != nil || !ok {
		t.Fatalf("Decode: ok=%v err=%v", ok, err)
	}
	if !got.Time.Equal(want.Time) || got.ID != want.ID {
		t.Fatalf("Decode = %+v, want %+v", got, want)
	}
}

func TestTokenRejected(t *testing.T) {
	tok := Encode(cursor{ID: "abc"}, "source=web")
	for name, tc := range map[string]struct{ token, query string }{
		"other query": {tok, "source=import"},
		"garbage":     {"!!!", "source=web"},
		"not json":    {"bm90IGpzb24", "source=web"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := Decode[cursor](tc.token, tc.query); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("Decode err = %v, want ErrInvalidToken", err)
			}
		})
	}
	if _, ok, err := Decode[cursor]("", "x"); ok || err != nil {
		t.Fatalf("empty token: ok=%v err=%v", ok, err)
	}
}

func TestList(t *testing.T) {
	rows := []int{1, 2, 3, 4, 5}
	fetch := func(after *int, limit int) ([]int, error) {
		start := 0
		if after != nil {
			start = *after
		}
		end := min(start+limit, len(rows))
		return rows[start:end], nil
	}
	cursorOf := func(v int) int { return v } // the value is also its position after itself
	var got []int
	token := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		page, next, err := List(token, "q", 2, fetch, cursorOf)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			break
		}
		token = next
	}
	if len(got) != 5 || got[4] != 5 {
		t.Fatalf("paged through %v, want 1..5", got)
	}
	if _, _, err := List(Encode(1, "q"), "other", 2, fetch, cursorOf); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("token for another query: %v", err)
	}
}
