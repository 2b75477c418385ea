package server

import (
	"context"

	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/types/known/timestamppb"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/page"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/handoff/internal/convert"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

func toProtoSchedule(s handoff.ExportSchedule) *handoffv1.ExportSchedule {
	out := &handoffv1.ExportSchedule{
		Name:        convert.Name("exportSchedules", s.ID),
		DisplayName: s.DisplayName,
		Frequency:   handoffv1.ExportSchedule_Frequency(s.Frequency),
		DayOfMonth:  int32(s.DayOfMonth),
		Hour:        int32(s.Hour),
		TimeZone:    s.TimeZone,
		Disabled:    s.Disabled,
		NextRunTime: timestamppb.New(s.NextRun),
		CreateTime:  timestamppb.New(s.CreateTime),
		UpdateTime:  timestamppb.New(s.UpdateTime),
		Etag:        handoff.Etag(s.Version),
	}
	if s.Frequency == handoff.Weekly {
		out.Weekday = convert.Weekday(s.Weekday)
	}
	if s.LastRun != nil {
		out.LastRunTime = timestamppb.New(*s.LastRun)
	}
	for _, st := range s.States {
		out.States = append(out.States, handoffv1.Handoff_State(st))
	}
	return out
}

func fromProtoSchedule(in *handoffv1.ExportSchedule) handoff.ExportSchedule {
	s := handoff.ExportSchedule{
		DisplayName: in.GetDisplayName(), Frequency: handoff.Frequency(in.GetFrequency()),
		DayOfMonth: int(in.GetDayOfMonth()), Hour: int(in.GetHour()), TimeZone: in.GetTimeZone(),
		Disabled: in.GetDisabled(),
	}
	if in.GetWeekday() != 0 {
		s.Weekday = convert.GoWeekday(in.GetWeekday())
	}
	for _, st := range in.GetStates() {
		s.States = append(s.States, handoff.State(st))
	}
	return s
}

func toProtoExport(e handoff.Export) *handoffv1.Export {
	out := &handoffv1.Export{
		Name:            resname.Format("exportSchedules", e.Schedule, "exports", e.ID),
		State:           handoffv1.Export_State(e.State),
		PeriodStartTime: timestamppb.New(e.PeriodStart),
		PeriodEndTime:   timestamppb.New(e.PeriodEnd),
		RowCount:        e.RowCount,
		SizeBytes:       e.SizeBytes,
		CreateTime:      timestamppb.New(e.CreateTime),
		ExpireTime:      timestamppb.New(e.ExpireTime),
		ErrorMessage:    e.ErrorMessage,
	}
	if e.CompleteTime != nil {
		out.CompleteTime = timestamppb.New(*e.CompleteTime)
	}
	return out
}

func scheduleID(name string) (string, error) {
	sid, err := id(name, "exportSchedules")
	if err != nil || sid == "" {
		return "", handoff.ErrScheduleNotFound
	}
	return sid, nil
}

// CreateExportSchedule implements handoffv1.HandoffServiceServer.
func (s *Server) CreateExportSchedule(ctx context.Context, req *handoffv1.CreateExportScheduleRequest) (*handoffv1.CreateExportScheduleResponse, error) {
	sch := fromProtoSchedule(req.GetExportSchedule())
	sch.Workspace, sch.ID = auth.Workspace(ctx), req.GetExportScheduleId()
	created, err := s.svc.CreateSchedule(ctx, sch, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &handoffv1.CreateExportScheduleResponse{ExportSchedule: toProtoSchedule(created)}, nil
}

// GetExportSchedule implements handoffv1.HandoffServiceServer.
func (s *Server) GetExportSchedule(ctx context.Context, req *handoffv1.GetExportScheduleRequest) (*handoffv1.GetExportScheduleResponse, error) {
	sid, err := scheduleID(req.GetName())
	if err != nil {
		return nil, err
	}
	sch, err := s.svc.GetSchedule(ctx, auth.Workspace(ctx), sid)
	if err != nil {
		return nil, err
	}
	return &handoffv1.GetExportScheduleResponse{ExportSchedule: toProtoSchedule(sch)}, nil
}

// ListExportSchedules implements handoffv1.HandoffServiceServer.
func (s *Server) ListExportSchedules(ctx context.Context, req *handoffv1.ListExportSchedulesRequest) (*handoffv1.ListExportSchedulesResponse, error) {
	ws := auth.Workspace(ctx)
	query := "schedules|" + ws
	ss, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *handoff.NameCursor, limit int) ([]handoff.ExportSchedule, error) {
			return s.svc.ListSchedules(ctx, ws, after, limit)
		},
		func(sch handoff.ExportSchedule) handoff.NameCursor { return handoff.NameCursor{ID: sch.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &handoffv1.ListExportSchedulesResponse{NextPageToken: next}
	for _, sch := range ss {
		resp.ExportSchedules = append(resp.ExportSchedules, toProtoSchedule(sch))
	}
	return resp, nil
}

// UpdateExportSchedule implements handoffv1.HandoffServiceServer.
func (s *Server) UpdateExportSchedule(ctx context.Context, req *handoffv1.UpdateExportScheduleRequest) (*handoffv1.UpdateExportScheduleResponse, error) {
	in := req.GetExportSchedule()
	sid, err := scheduleID(in.GetName())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths(req.GetUpdateMask(), "export_schedule", "display_name", "frequency", "weekday",
		"day_of_month", "hour", "time_zone", "states", "disabled")
	if err != nil {
		return nil, err
	}
	v := fromProtoSchedule(in)
	sch, err := s.svc.UpdateSchedule(ctx, auth.Workspace(ctx), sid, in.GetEtag(), func(sch *handoff.ExportSchedule) {
		set(paths, "display_name", &sch.DisplayName, v.DisplayName)
		if paths["frequency"] && v.Frequency != 0 {
			sch.Frequency = v.Frequency
		}
		set(paths, "weekday", &sch.Weekday, v.Weekday)
		set(paths, "day_of_month", &sch.DayOfMonth, v.DayOfMonth)
		set(paths, "hour", &sch.Hour, v.Hour)
		set(paths, "time_zone", &sch.TimeZone, v.TimeZone)
		set(paths, "states", &sch.States, v.States)
		set(paths, "disabled", &sch.Disabled, v.Disabled)
	})
	if err != nil {
		return nil, err
	}
	return &handoffv1.UpdateExportScheduleResponse{ExportSchedule: toProtoSchedule(sch)}, nil
}

// DeleteExportSchedule implements handoffv1.HandoffServiceServer.
func (s *Server) DeleteExportSchedule(ctx context.Context, req *handoffv1.DeleteExportScheduleRequest) (*handoffv1.DeleteExportScheduleResponse, error) {
	sid, err := scheduleID(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteSchedule(ctx, auth.Workspace(ctx), sid, req.GetEtag()); err != nil {
		return nil, err
	}
	return &handoffv1.DeleteExportScheduleResponse{}, nil
}

// RunExportSchedule implements handoffv1.HandoffServiceServer. The export
// is produced before the call returns, so it comes back SUCCEEDED.
func (s *Server) RunExportSchedule(ctx context.Context, req *handoffv1.RunExportScheduleRequest) (*handoffv1.RunExportScheduleResponse, error) {
	sid, err := scheduleID(req.GetName())
	if err != nil {
		return nil, err
	}
	e, err := s.svc.RunSchedule(ctx, auth.Workspace(ctx), sid, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &handoffv1.RunExportScheduleResponse{Export: toProtoExport(e)}, nil
}

// ListExports implements handoffv1.HandoffServiceServer.
func (s *Server) ListExports(ctx context.Context, req *handoffv1.ListExportsRequest) (*handoffv1.ListExportsResponse, error) {
	ws := auth.Workspace(ctx)
	sid, err := scheduleID(req.GetParent())
	if err != nil {
		return nil, err
	}
	if sid == "-" {
		sid = ""
	}
	query := "exports|" + ws + "|" + sid
	es, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *handoff.TimeCursor, limit int) ([]handoff.Export, error) {
			return s.svc.ListExports(ctx, ws, sid, after, limit)
		},
		func(e handoff.Export) handoff.TimeCursor { return handoff.TimeCursor{Time: e.CreateTime, ID: e.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &handoffv1.ListExportsResponse{NextPageToken: next}
	for _, e := range es {
		resp.Exports = append(resp.Exports, toProtoExport(e))
	}
	return resp, nil
}

// DownloadExport implements handoffv1.HandoffServiceServer.
func (s *Server) DownloadExport(ctx context.Context, req *handoffv1.DownloadExportRequest) (*handoffv1.DownloadExportResponse, error) {
	ids, ok := resname.Parse(req.GetName(), "exportSchedules", "exports")
	if !ok {
		return nil, handoff.ErrExportNotFound
	}
	data, err := s.svc.Download(ctx, auth.Workspace(ctx), ids[0], ids[1])
	if err != nil {
		return nil, err
	}
	return &handoffv1.DownloadExportResponse{Body: &httpbody.HttpBody{
		ContentType: "text/csv; charset=utf-8", Data: data,
	}}, nil
}
