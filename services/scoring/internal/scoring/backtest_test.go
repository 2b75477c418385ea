package scoring

import "testing"

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name          string
		results       []BacktestResult
		width, min    int64
		wantBands     []int64 // lower bounds
		wantThreshold int64   // -1 for none
	}{
		{"no leads", nil, 10, 1, nil, -1},
		{"no wins suggests nothing", []BacktestResult{{Total: 10}, {Total: 20}}, 10, 1, []int64{10, 20}, -1},
		{"negative scores band downwards", []BacktestResult{{Total: -1}, {Total: -10}, {Total: -11, Won: true}}, 10, 1, []int64{-20, -10}, -20},
		{"too few leads above every threshold", []BacktestResult{{Total: 90, Won: true}, {Total: 10}}, 10, 3, []int64{10, 90}, -1},
		{"default width and minimum", []BacktestResult{{Total: 95, Won: true}, {Total: 5}}, 0, 0, []int64{0, 90}, -1},
		{"best lift wins", []BacktestResult{{Total: 90, Won: true}, {Total: 80, Won: true}, {Total: 85}, {Total: 10}, {Total: 20}, {Total: 30}},
			10, 2, []int64{10, 20, 30, 80, 90}, 80}, // 90 alone has too few leads
	} {
		t.Run(tc.name, func(t *testing.T) {
			bt := Summarize(tc.results, DefaultGradeBands, tc.width, tc.min)
			var bands []int64
			var n int64
			for _, b := range bt.Bands {
				bands = append(bands, b.MinScore)
				n += b.LeadCount
			}
			if len(bands) != len(tc.wantBands) || n != int64(len(tc.results)) {
				t.Fatalf("bands = %v (%d leads), want %v", bands, n, tc.wantBands)
			}
			for i := range bands {
				if bands[i] != tc.wantBands[i] {
					t.Fatalf("bands = %v, want %v", bands, tc.wantBands)
				}
			}
			switch {
			case tc.wantThreshold == -1 && bt.Suggested != nil:
				t.Fatalf("suggested %+v, want none", bt.Suggested)
			case tc.wantThreshold != -1 && (bt.Suggested == nil || bt.Suggested.Threshold != tc.wantThreshold):
				t.Fatalf("suggested %+v, want %d", bt.Suggested, tc.wantThreshold)
			}
		})
	}
}
