package store

import (
	"math"
	"time"
)

// The duration histogram of the funnel rollups, mirroring funnel_bucket in
// migrations/00002_funnel_rollup.sql: bucket 0 holds [0, 1 min); buckets 1
// to 126 split [1 min, 730 days) into ranges of equal ratio histRatio; bucket
// 127 holds 730 days and more.
const (
	histBuckets = 128
	histMin     = 60.0                  // seconds
	histSpan    = 730 * 86400 / histMin // 730 days / 1 min
)

// histRatio is the ratio of a bucket's upper to lower bound, about 1.1163:
// an estimate read from the histogram is within a factor histRatio of the
// true value (from 1 minute to 730 days).
var histRatio = math.Pow(histSpan, 1.0/(histBuckets-2))

// histError is the largest relative error of a duration the funnel
// estimates from its histograms (between 1 minute and 730 days).
var histError = histRatio - 1

// bucketBounds returns bucket b's range in seconds.
func bucketBounds(b int) (lo, hi float64) {
	if b <= 0 {
		return 0, histMin
	}
	lo = histMin * math.Pow(histSpan, float64(b-1)/(histBuckets-2))
	return lo, lo * histRatio
}

// histogram counts durations by bucket.
type histogram [histBuckets]int64

func (h *histogram) total() int64 {
	var n int64
	for _, c := range h {
		n += c
	}
	return n
}

// quantile estimates what percentile_cont(p) over the counted durations
// returns: the order statistics around p·(n-1) are placed inside their
// buckets, evenly on a log scale (linearly in bucket 0), and interpolated.
// nil for an empty histogram.
func (h *histogram) quantile(p float64) *time.Duration {
	n := h.total()
	if n == 0 {
		return nil
	}
	pos := p * float64(n-1)
	k := int64(math.Floor(pos))
	v := h.orderStat(k)
	if frac := pos - float64(k); frac > 0 && k+1 < n {
		v += frac * (h.orderStat(k+1) - v)
	}
	return seconds(v)
}

// orderStat estimates the j-th smallest duration (from 0), in seconds.
func (h *histogram) orderStat(j int64) float64 {
	var before int64
	for b, m := range h {
		if j >= before+m {
			before += m
			continue
		}
		lo, hi := bucketBounds(b)
		at := (float64(j-before) + 0.5) / float64(m)
		if b == 0 {
			return lo + (hi-lo)*at
		}
		return lo * math.Pow(hi/lo, at)
	}
	_, hi := bucketBounds(histBuckets - 1)
	return hi
}
