package server

import (
	"context"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	lifecyclev1 "github.com/leadflow/leadflow/gen/go/leadflow/lifecycle/v1"
	typesv1 "github.com/leadflow/leadflow/gen/go/leadflow/types/v1"
	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/pkg/telemetry"
	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
)

// GetLeadJourney implements lifecyclev1.LifecycleServiceServer.
func (s *Server) GetLeadJourney(ctx context.Context, req *lifecyclev1.GetLeadJourneyRequest) (*lifecyclev1.GetLeadJourneyResponse, error) {
	ws, err := workspace(ctx)
	if err != nil {
		return nil, err
	}
	id, ok := strings.CutSuffix(req.GetName(), "/journey")
	ids, ok2 := resname.Parse(id, "leads")
	if !ok || !ok2 {
		return nil, apperr.InvalidArgument("invalid name", apperr.Field("name", `must be "leads/{lead}/journey"`))
	}
	steps, err := s.svc.Journey(ctx, ws, ids[0])
	if err != nil {
		return nil, err
	}
	out := &lifecyclev1.LeadJourney{Name: req.GetName()}
	for _, st := range steps {
		out.Steps = append(out.Steps, &lifecyclev1.JourneyStep{
			Kind:        stepKinds[st.Kind],
			StepTime:    timestamppb.New(st.Time),
			FromStage:   typesv1.Stage(st.From),
			ToStage:     typesv1.Stage(st.To),
			Description: st.Description,
			Source:      st.Source,
			TraceId:     st.TraceID,
		})
	}
	return &lifecyclev1.GetLeadJourneyResponse{Journey: out}, nil
}

var stepKinds = map[lifecycle.StepKind]lifecyclev1.JourneyStep_Kind{
	lifecycle.StepCaptured:     lifecyclev1.JourneyStep_KIND_CAPTURED,
	lifecycle.StepQualified:    lifecyclev1.JourneyStep_KIND_QUALIFIED,
	lifecycle.StepStageChanged: lifecyclev1.JourneyStep_KIND_STAGE_CHANGED,
	lifecycle.StepAssigned:     lifecyclev1.JourneyStep_KIND_ASSIGNED,
	lifecycle.StepAccepted:     lifecyclev1.JourneyStep_KIND_ACCEPTED,
	lifecycle.StepRejected:     lifecyclev1.JourneyStep_KIND_REJECTED,
}

// linkToLead links the span of a move made through the API (to SQL, to
// Won, days after the capture) to the lead's capture trace.
func (s *Server) linkToLead(ctx context.Context, ws, lead string) {
	origin, err := s.svc.Origin(ctx, ws, lead)
	if err != nil {
		return // tracing is best effort; the move itself succeeded
	}
	telemetry.LinkToLead(ctx, ws, lead, origin)
}
