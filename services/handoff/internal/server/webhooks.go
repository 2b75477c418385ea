package server

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/page"
	"github.com/leadflow/leadflow/pkg/resname"
	"github.com/leadflow/leadflow/services/handoff/internal/convert"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

func toProtoSubscription(s handoff.Subscription) *handoffv1.WebhookSubscription {
	out := &handoffv1.WebhookSubscription{
		Name:         convert.Name("webhookSubscriptions", s.ID),
		DisplayName:  s.DisplayName,
		Url:          s.URL,
		MaxAttempts:  int32(s.MaxAttempts),
		Disabled:     s.Disabled,
		SecretPrefix: s.SecretPrefix(),
		CreateTime:   timestamppb.New(s.CreateTime),
		UpdateTime:   timestamppb.New(s.UpdateTime),
		Etag:         handoff.Etag(s.Version),
	}
	for _, t := range s.EventTypes {
		out.EventTypes = append(out.EventTypes, handoffv1.WebhookEventType(t))
	}
	return out
}

func fromProtoEventTypes(ts []handoffv1.WebhookEventType) []handoff.EventType {
	out := make([]handoff.EventType, 0, len(ts))
	for _, t := range ts {
		out = append(out, handoff.EventType(t))
	}
	return out
}

func toProtoDelivery(d handoff.Delivery) *handoffv1.WebhookDelivery {
	out := &handoffv1.WebhookDelivery{
		Name:         resname.Format("webhookSubscriptions", d.Subscription, "deliveries", d.ID),
		EventId:      d.EventID,
		EventType:    handoffv1.WebhookEventType(d.EventType),
		Handoff:      convert.Name("handoffs", d.Handoff),
		State:        handoffv1.WebhookDelivery_State(d.State),
		AttemptCount: int32(d.AttemptCount),
		RedriveCount: int32(d.RedriveCount),
		CreateTime:   timestamppb.New(d.CreateTime),
	}
	if d.State == handoff.DeliveryPending && d.NextAttemptTime != nil {
		out.NextAttemptTime = timestamppb.New(*d.NextAttemptTime)
	}
	if d.CompleteTime != nil {
		out.CompleteTime = timestamppb.New(*d.CompleteTime)
	}
	for _, a := range d.Attempts {
		out.Attempts = append(out.Attempts, &handoffv1.DeliveryAttempt{
			AttemptTime: timestamppb.New(a.Time), HttpStatusCode: int32(a.Status),
			Error: a.Error, Duration: durationpb.New(a.Duration),
		})
	}
	return out
}

func subscriptionID(name string) (string, error) {
	sid, err := id(name, "webhookSubscriptions")
	if err != nil || sid == "" {
		return "", handoff.ErrSubscriptionNotFound
	}
	return sid, nil
}

func deliveryName(name string) (sub, delivery string, err error) {
	ids, ok := resname.Parse(name, "webhookSubscriptions", "deliveries")
	if !ok {
		return "", "", handoff.ErrDeliveryNotFound
	}
	return ids[0], ids[1], nil
}

// CreateWebhookSubscription implements handoffv1.HandoffServiceServer.
func (s *Server) CreateWebhookSubscription(ctx context.Context, req *handoffv1.CreateWebhookSubscriptionRequest) (*handoffv1.CreateWebhookSubscriptionResponse, error) {
	in := req.GetWebhookSubscription()
	sub, err := s.svc.CreateSubscription(ctx, handoff.Subscription{
		Workspace: auth.Workspace(ctx), ID: req.GetWebhookSubscriptionId(), DisplayName: in.GetDisplayName(),
		URL: in.GetUrl(), EventTypes: fromProtoEventTypes(in.GetEventTypes()),
		MaxAttempts: int(in.GetMaxAttempts()), Disabled: in.GetDisabled(),
	}, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return &handoffv1.CreateWebhookSubscriptionResponse{WebhookSubscription: toProtoSubscription(sub), Secret: sub.Secret}, nil
}

// GetWebhookSubscription implements handoffv1.HandoffServiceServer.
func (s *Server) GetWebhookSubscription(ctx context.Context, req *handoffv1.GetWebhookSubscriptionRequest) (*handoffv1.GetWebhookSubscriptionResponse, error) {
	sid, err := subscriptionID(req.GetName())
	if err != nil {
		return nil, err
	}
	sub, err := s.svc.GetSubscription(ctx, auth.Workspace(ctx), sid)
	if err != nil {
		return nil, err
	}
	return &handoffv1.GetWebhookSubscriptionResponse{WebhookSubscription: toProtoSubscription(sub)}, nil
}

// ListWebhookSubscriptions implements handoffv1.HandoffServiceServer.
func (s *Server) ListWebhookSubscriptions(ctx context.Context, req *handoffv1.ListWebhookSubscriptionsRequest) (*handoffv1.ListWebhookSubscriptionsResponse, error) {
	ws := auth.Workspace(ctx)
	query := "subscriptions|" + ws
	subs, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *handoff.NameCursor, limit int) ([]handoff.Subscription, error) {
			return s.svc.ListSubscriptions(ctx, ws, after, limit)
		},
		func(sub handoff.Subscription) handoff.NameCursor { return handoff.NameCursor{ID: sub.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &handoffv1.ListWebhookSubscriptionsResponse{NextPageToken: next}
	for _, sub := range subs {
		resp.WebhookSubscriptions = append(resp.WebhookSubscriptions, toProtoSubscription(sub))
	}
	return resp, nil
}

// UpdateWebhookSubscription implements handoffv1.HandoffServiceServer.
func (s *Server) UpdateWebhookSubscription(ctx context.Context, req *handoffv1.UpdateWebhookSubscriptionRequest) (*handoffv1.UpdateWebhookSubscriptionResponse, error) {
	in := req.GetWebhookSubscription()
	sid, err := subscriptionID(in.GetName())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths(req.GetUpdateMask(), "webhook_subscription", "display_name", "url", "event_types",
		"max_attempts", "disabled")
	if err != nil {
		return nil, err
	}
	sub, err := s.svc.UpdateSubscription(ctx, auth.Workspace(ctx), sid, in.GetEtag(), func(sub *handoff.Subscription) {
		set(paths, "display_name", &sub.DisplayName, in.GetDisplayName())
		if paths["url"] && in.GetUrl() != "" {
			sub.URL = in.GetUrl()
		}
		if paths["event_types"] && len(in.GetEventTypes()) > 0 {
			sub.EventTypes = fromProtoEventTypes(in.GetEventTypes())
		}
		set(paths, "max_attempts", &sub.MaxAttempts, int(in.GetMaxAttempts()))
		set(paths, "disabled", &sub.Disabled, in.GetDisabled())
	})
	if err != nil {
		return nil, err
	}
	return &handoffv1.UpdateWebhookSubscriptionResponse{WebhookSubscription: toProtoSubscription(sub)}, nil
}

// DeleteWebhookSubscription implements handoffv1.HandoffServiceServer.
func (s *Server) DeleteWebhookSubscription(ctx context.Context, req *handoffv1.DeleteWebhookSubscriptionRequest) (*handoffv1.DeleteWebhookSubscriptionResponse, error) {
	sid, err := subscriptionID(req.GetName())
	if err != nil {
		return nil, err
	}
	if err := s.svc.DeleteSubscription(ctx, auth.Workspace(ctx), sid, req.GetEtag()); err != nil {
		return nil, err
	}
	return &handoffv1.DeleteWebhookSubscriptionResponse{}, nil
}

// RotateWebhookSubscriptionSecret implements handoffv1.HandoffServiceServer.
func (s *Server) RotateWebhookSubscriptionSecret(ctx context.Context, req *handoffv1.RotateWebhookSubscriptionSecretRequest) (*handoffv1.RotateWebhookSubscriptionSecretResponse, error) {
	sid, err := subscriptionID(req.GetName())
	if err != nil {
		return nil, err
	}
	sub, err := s.svc.RotateSecret(ctx, auth.Workspace(ctx), sid, req.GetEtag())
	if err != nil {
		return nil, err
	}
	return &handoffv1.RotateWebhookSubscriptionSecretResponse{WebhookSubscription: toProtoSubscription(sub), Secret: sub.Secret}, nil
}

// ListWebhookDeliveries implements handoffv1.HandoffServiceServer.
func (s *Server) ListWebhookDeliveries(ctx context.Context, req *handoffv1.ListWebhookDeliveriesRequest) (*handoffv1.ListWebhookDeliveriesResponse, error) {
	ws := auth.Workspace(ctx)
	sid, err := subscriptionID(req.GetParent())
	if err != nil {
		return nil, err
	}
	if sid == "-" {
		sid = ""
	}
	hid, err := id(req.GetHandoff(), "handoffs")
	if err != nil {
		return nil, err
	}
	f := handoff.DeliveryFilter{Subscription: sid, State: handoff.DeliveryState(req.GetState()), Handoff: hid}
	query := fmt.Sprintf("deliveries|%s|%+v", ws, f)
	ds, next, err := page.List(req.GetPageToken(), query, req.GetPageSize(),
		func(after *handoff.TimeCursor, limit int) ([]handoff.Delivery, error) {
			return s.svc.ListDeliveries(ctx, ws, f, after, limit)
		},
		func(d handoff.Delivery) handoff.TimeCursor { return handoff.TimeCursor{Time: d.CreateTime, ID: d.ID} })
	if err != nil {
		return nil, listError(err)
	}
	resp := &handoffv1.ListWebhookDeliveriesResponse{NextPageToken: next}
	for _, d := range ds {
		resp.WebhookDeliveries = append(resp.WebhookDeliveries, toProtoDelivery(d))
	}
	return resp, nil
}

// GetWebhookDelivery implements handoffv1.HandoffServiceServer.
func (s *Server) GetWebhookDelivery(ctx context.Context, req *handoffv1.GetWebhookDeliveryRequest) (*handoffv1.GetWebhookDeliveryResponse, error) {
	sub, did, err := deliveryName(req.GetName())
	if err != nil {
		return nil, err
	}
	d, err := s.svc.GetDelivery(ctx, auth.Workspace(ctx), sub, did)
	if err != nil {
		return nil, err
	}
	return &handoffv1.GetWebhookDeliveryResponse{WebhookDelivery: toProtoDelivery(d)}, nil
}

// RedriveWebhookDelivery implements handoffv1.HandoffServiceServer.
func (s *Server) RedriveWebhookDelivery(ctx context.Context, req *handoffv1.RedriveWebhookDeliveryRequest) (*handoffv1.RedriveWebhookDeliveryResponse, error) {
	sub, did, err := deliveryName(req.GetName())
	if err != nil {
		return nil, err
	}
	d, err := s.svc.Redrive(ctx, auth.Workspace(ctx), sub, did)
	if err != nil {
		return nil, err
	}
	return &handoffv1.RedriveWebhookDeliveryResponse{WebhookDelivery: toProtoDelivery(d)}, nil
}
