package lifecycle

import (
	"slices"
	"time"
)

// Stage is a position on the Demand Waterfall. The values are numbered like
// leadflow.types.v1.Stage, so converting is a cast; String gives the name
// stored in the database.
type Stage int

// The stages.
const (
	StageUnspecified Stage = iota
	StageInquiry
	StageMQL
	StageTQL
	StageSAL
	StageSQL
	StageOpportunity
	StageWon
	StageLost
	StageSGL
	StageDisqualified
	StageRecycled
)

var stageNames = [...]string{
	StageUnspecified:  "",
	StageInquiry:      "inquiry",
	StageMQL:          "mql",
	StageTQL:          "tql",
	StageSAL:          "sal",
	StageSQL:          "sql",
	StageOpportunity:  "opportunity",
	StageWon:          "won",
	StageLost:         "lost",
	StageSGL:          "sgl",
	StageDisqualified: "disqualified",
	StageRecycled:     "recycled",
}

// Stages lists every stage in report order: the waterfall (SAL and SGL
// share a position), then the stages off it.
var Stages = []Stage{
	StageInquiry, StageMQL, StageTQL, StageSAL, StageSGL, StageSQL,
	StageOpportunity, StageWon, StageLost, StageDisqualified, StageRecycled,
}

// String returns the stage's stored name ("mql"), or "" for StageUnspecified.
func (s Stage) String() string {
	if s < 0 || int(s) >= len(stageNames) {
		return ""
	}
	return stageNames[s]
}

// Valid reports whether s is a real stage.
func (s Stage) Valid() bool { return s > StageUnspecified && int(s) < len(stageNames) }

// ParseStage returns the stage stored as name; "" is StageUnspecified.
func ParseStage(name string) (Stage, bool) {
	i := slices.Index(stageNames[:], name)
	if i < 0 {
		return StageUnspecified, false
	}
	return Stage(i), true
}

// position orders the waterfall; stages off it (Lost, Disqualified,
// Recycled) have none, so moves into or out of them are never "backward".
func (s Stage) position() (int, bool) {
	switch s {
	case StageInquiry:
		return 1, true
	case StageMQL:
		return 2, true
	case StageTQL:
		return 3, true
	case StageSAL, StageSGL:
		return 4, true
	case StageSQL:
		return 5, true
	case StageOpportunity:
		return 6, true
	case StageWon:
		return 7, true
	}
	return 0, false
}

// IsBackward reports whether moving from one stage to another goes back up
// the waterfall, which needs a reason.
func IsBackward(from, to Stage) bool {
	pf, okf := from.position()
	pt, okt := to.position()
	return okf && okt && pt < pf
}

// Temperature is how ready a lead looks. Numbered like
// leadflow.types.v1.Temperature.
type Temperature int

// The temperatures.
const (
	TemperatureUnspecified Temperature = iota
	TemperatureCold
	TemperatureWarm
	TemperatureHot
)

var temperatureNames = [...]string{"", "cold", "warm", "hot"}

// String returns the stored name ("hot"), or "" when unknown.
func (t Temperature) String() string {
	if t < 0 || int(t) >= len(temperatureNames) {
		return ""
	}
	return temperatureNames[t]
}

// ParseTemperature returns the temperature stored as name.
func ParseTemperature(name string) Temperature {
	if i := slices.Index(temperatureNames[:], name); i > 0 {
		return Temperature(i)
	}
	return TemperatureUnspecified
}

// Temperature thresholds (see the service README). A lead is hot when its
// score reaches HotScore and it was active within HotWithin, warm when its
// score reaches WarmScore and it was active within WarmWithin, and cold
// otherwise. Before its first score the temperature is unknown.
const (
	HotScore   = 80
	HotWithin  = 7 * 24 * time.Hour
	WarmScore  = 40
	WarmWithin = 30 * 24 * time.Hour
)

// TemperatureOf derives a temperature from a score (nil when the lead was
// never scored), the time of the lead's last activity, and now.
func TemperatureOf(score *int64, lastActivity time.Time, now time.Time) Temperature {
	if score == nil {
		return TemperatureUnspecified
	}
	idle := now.Sub(lastActivity)
	switch {
	case *score >= HotScore && idle <= HotWithin:
		return TemperatureHot
	case *score >= WarmScore && idle <= WarmWithin:
		return TemperatureWarm
	}
	return TemperatureCold
}
