package lifecycle

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// ReasonCode is one entry of a reason list.
type ReasonCode struct {
	Code        string
	DisplayName string
}

// Settings is a workspace's lifecycle policy: which moves are allowed and
// which reasons a lead may be Lost or Disqualified for.
type Settings struct {
	// Allowed maps a stage to the stages a lead may move to from it. A stage
	// missing from the map allows no move.
	Allowed             map[Stage][]Stage
	LostReasons         []ReasonCode
	DisqualifiedReasons []ReasonCode
	// Version is 0 for the defaults (never stored), then counts updates.
	Version    int64
	UpdateTime time.Time
}

// Etag identifies this version of the settings (AIP-154).
func (s Settings) Etag() string { return strconv.FormatInt(s.Version, 10) }

// DefaultSettings is what a workspace has until it changes something: the
// waterfall, with backward moves and recycling, and the standard reasons.
func DefaultSettings() Settings {
	return Settings{
		Allowed: map[Stage][]Stage{
			StageInquiry:      {StageMQL, StageDisqualified},
			StageMQL:          {StageTQL, StageSAL, StageRecycled, StageDisqualified, StageInquiry},
			StageTQL:          {StageSAL, StageRecycled, StageDisqualified, StageMQL},
			StageSAL:          {StageSQL, StageRecycled, StageDisqualified, StageMQL},
			StageSGL:          {StageSQL, StageRecycled, StageDisqualified},
			StageSQL:          {StageOpportunity, StageRecycled, StageDisqualified, StageLost, StageSAL},
			StageOpportunity:  {StageWon, StageLost, StageSQL},
			StageRecycled:     {StageMQL, StageDisqualified},
			StageLost:         {StageRecycled, StageOpportunity},
			StageDisqualified: {StageInquiry},
		},
		LostReasons: []ReasonCode{
			{"no_budget", "No budget"},
			{"no_decision", "No decision"},
			{"competitor", "Went with a competitor"},
			{"timing", "Bad timing"},
			{"price", "Price"},
			{"other", "Other"},
		},
		DisqualifiedReasons: []ReasonCode{
			{"student", "Student"},
			{"competitor", "Competitor"},
			{"job_seeker", "Job seeker"},
			{"spam", "Spam"},
			{"no_fit", "No fit"},
			{"duplicate", "Duplicate"},
			{"other", "Other"},
		},
	}
}

// Allows reports whether the graph lets a lead move from one stage to another.
func (s Settings) Allows(from, to Stage) bool { return slices.Contains(s.Allowed[from], to) }

// hasReason reports whether code is in list.
func hasReason(list []ReasonCode, code string) bool {
	return slices.ContainsFunc(list, func(r ReasonCode) bool { return r.Code == code })
}

// Validate checks what the API's own rules cannot: the reason lists must not
// be empty, and the graph names only real stages.
func (s Settings) Validate() error {
	var opts []apperr.Option
	if len(s.LostReasons) == 0 {
		opts = append(opts, apperr.Field("lifecycle_settings.lost_reasons", "must not be empty"))
	}
	if len(s.DisqualifiedReasons) == 0 {
		opts = append(opts, apperr.Field("lifecycle_settings.disqualified_reasons", "must not be empty"))
	}
	for from, tos := range s.Allowed {
		if !from.Valid() {
			opts = append(opts, apperr.Field("lifecycle_settings.allowed_transitions", fmt.Sprintf("unknown from_stage %d", from)))
		}
		for _, to := range tos {
			if !to.Valid() {
				opts = append(opts, apperr.Field("lifecycle_settings.allowed_transitions", fmt.Sprintf("unknown to_stage %d", to)))
			}
			if to == from {
				opts = append(opts, apperr.Field("lifecycle_settings.allowed_transitions",
					fmt.Sprintf("stage %s may not move to itself", from)))
			}
		}
	}
	if len(opts) > 0 {
		return apperr.InvalidArgument("invalid lifecycle settings", opts...)
	}
	return nil
}
