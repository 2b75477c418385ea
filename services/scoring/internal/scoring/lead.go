package scoring

import (
	"strings"
	"time"
	"unicode"
)

// QualificationReason is why a lead became an MQL.
type QualificationReason int

// Qualification reasons, numbered as scoringv1.QualificationReason.
const (
	ReasonScoreThreshold QualificationReason = 1
	ReasonHandRaiser     QualificationReason = 2
)

// Qualification records when and why a lead qualified.
type Qualification struct {
	Reason       QualificationReason
	Time         time.Time
	TotalScore   int64
	ModelVersion int64
	// Activity is the hand-raiser activity's id, if any.
	Activity string
}

// Crossing is a moment the total score crossed the MQL threshold.
type Crossing struct {
	Up           bool
	Time         time.Time
	TotalScore   int64
	ModelVersion int64
}

// Outcomes of a lead, from lifecycle's stage changes.
const (
	OutcomeWon  = "won"
	OutcomeLost = "lost"
)

// Lead is what scoring keeps about one lead: its facts, the last score it
// stored (which orders lists and detects threshold crossings), its
// qualification and its sales outcome.
type Lead struct {
	Workspace string
	ID        string
	Facts     LeadFacts
	// FactsTime is when the facts were true at ingestion, so an older
	// update arriving late does not overwrite a newer one.
	FactsTime *time.Time

	ModelID         string
	ModelVersion    int64
	FitMilli        int64
	EngagementMilli int64
	TotalMilli      int64
	Grade           string
	AboveThreshold  bool
	ScoreTime       *time.Time

	Qualification *Qualification
	Outcome       string
	OutcomeTime   *time.Time
	CreateTime    time.Time
}

// Seniority derives a seniority from a job title: "c_level", "vp",
// "director", "manager", "individual", or "" for no title.
func Seniority(title string) string {
	words := strings.FieldsFunc(strings.ToLower(title), func(r rune) bool { return !unicode.IsLetter(r) })
	if len(words) == 0 {
		return ""
	}
	has := func(ws ...string) bool {
		for _, w := range words {
			for _, x := range ws {
				if w == x {
					return true
				}
			}
		}
		return false
	}
	lower := " " + strings.Join(words, " ") + " "
	switch {
	case has("ceo", "cto", "cfo", "coo", "cmo", "cio", "cro", "ciso", "chief", "founder", "cofounder", "owner", "president") &&
		!strings.Contains(lower, " vice president "):
		return "c_level"
	case has("vp", "svp", "evp") || strings.Contains(lower, " vice president ") || strings.Contains(lower, " head of "):
		return "vp"
	case has("director"):
		return "director"
	case has("manager", "lead", "supervisor"):
		return "manager"
	}
	return "individual"
}
