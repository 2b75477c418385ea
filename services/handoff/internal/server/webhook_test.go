package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	handoffv1 "github.com/leadflow/leadflow/gen/go/leadflow/handoff/v1"
	"github.com/leadflow/leadflow/pkg/logging"
	"github.com/leadflow/leadflow/services/handoff/internal/app"
	"github.com/leadflow/leadflow/services/handoff/internal/dispatch"
	"github.com/leadflow/leadflow/services/handoff/webhook"
)

// receiver is a CRM endpoint on loopback TLS that verifies signatures.
type receiver struct {
	srv    *httptest.Server
	secret atomic.Value // string
	fail   atomic.Bool
	mu     sync.Mutex
	got    []*handoffv1.WebhookPayload
	bad    []error
}

func newReceiver(t *testing.T, now func() time.Time) *receiver {
	r := &receiver{}
	r.secret.Store("")
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := webhook.Verify(r.secret.Load().(string), req.Header, body, now()); err != nil {
			r.bad = append(r.bad, err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if r.fail.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		p := &handoffv1.WebhookPayload{}
		if err := protojson.Unmarshal(body, p); err != nil {
			r.bad = append(r.bad, err)
			http.Error(w, "bad body", http.StatusBadRequest)
			return
		}
		if p.GetId() != req.Header.Get(webhook.HeaderID) {
			r.bad = append(r.bad, io.ErrUnexpectedEOF)
		}
		r.got = append(r.got, p)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) payloads() ([]*handoffv1.WebhookPayload, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*handoffv1.WebhookPayload(nil), r.got...), append([]error(nil), r.bad...)
}

func (f *fixture) subscribe(url string, maxAttempts int32, types ...handoffv1.WebhookEventType) *handoffv1.CreateWebhookSubscriptionResponse {
	f.t.Helper()
	resp, err := f.client.CreateWebhookSubscription(f.ctx, &handoffv1.CreateWebhookSubscriptionRequest{
		WebhookSubscriptionId: "crm",
		WebhookSubscription:   &handoffv1.WebhookSubscription{Url: url, EventTypes: types, MaxAttempts: maxAttempts},
	})
	if err != nil {
		f.t.Fatalf("subscribe: %v", err)
	}
	return resp
}

func TestWebhookSignedDelivery(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	rcv := newReceiver(t, f.clock.Now)
	sub := f.subscribe(rcv.srv.URL, 0,
		handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_HANDOFF_ASSIGNED, handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_HANDOFF_ACCEPTED)
	rcv.secret.Store(sub.GetSecret())
	if sub.GetSecret() == "" || sub.GetWebhookSubscription().GetSecretPrefix() == "" ||
		sub.GetWebhookSubscription().GetMaxAttempts() != 10 {
		t.Fatalf("subscription = %v", sub)
	}
	got, err := f.client.GetWebhookSubscription(f.ctx, &handoffv1.GetWebhookSubscriptionRequest{Name: sub.GetWebhookSubscription().GetName()})
	if err != nil || got.GetWebhookSubscription().GetSecretPrefix() != sub.GetWebhookSubscription().GetSecretPrefix() {
		t.Fatalf("get = %v, %v", got, err)
	}

	worker := dispatch.New(f.app.Store, rcv.srv.Client(), f.clock.Now, logging.Discard())
	h := f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})
	if _, err := f.client.AcceptHandoff(f.ctx, &handoffv1.AcceptHandoffRequest{Name: h.GetName()}); err != nil {
		t.Fatal(err)
	}
	n, err := worker.DeliverDue(context.Background())
	if err != nil || n != 2 {
		t.Fatalf("delivered %d, %v; want 2", n, err)
	}
	payloads, bad := rcv.payloads()
	if len(bad) > 0 || len(payloads) != 2 {
		t.Fatalf("receiver got %d payloads, errors %v", len(payloads), bad)
	}
	types := map[handoffv1.WebhookEventType]*handoffv1.WebhookPayload{}
	for _, p := range payloads {
		types[p.GetEventType()] = p
	}
	assigned := types[handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_HANDOFF_ASSIGNED]
	if assigned.GetHandoff().GetName() != h.GetName() || assigned.GetHandoff().GetOwner() != "owners/anna" ||
		assigned.GetOwnerExternalId() != "crm-anna" {
		t.Fatalf("assigned payload = %v", assigned)
	}
	if accepted := types[handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_HANDOFF_ACCEPTED]; accepted.GetHandoff().GetState() != handoffv1.Handoff_STATE_ACCEPTED {
		t.Fatalf("accepted payload = %v", accepted)
	}
	if n, _ := worker.DeliverDue(context.Background()); n != 0 {
		t.Fatalf("delivered %d again", n)
	}
	list, err := f.client.ListWebhookDeliveries(f.ctx, &handoffv1.ListWebhookDeliveriesRequest{
		Parent: "webhookSubscriptions/-", State: handoffv1.WebhookDelivery_STATE_SUCCEEDED,
	})
	if err != nil || len(list.GetWebhookDeliveries()) != 2 {
		t.Fatalf("succeeded deliveries = %v, %v", list, err)
	}

	t.Run("the rotated-out secret keeps verifying for a day", func(t *testing.T) {
		old := sub.GetSecret()
		rot, err := f.client.RotateWebhookSubscriptionSecret(f.ctx, &handoffv1.RotateWebhookSubscriptionSecretRequest{
			Name: sub.GetWebhookSubscription().GetName(),
		})
		if err != nil || rot.GetSecret() == old || rot.GetSecret() == "" {
			t.Fatalf("rotate = %v, %v", rot, err)
		}
		// The receiver still has the old secret.
		if _, err := f.client.RejectHandoff(f.ctx, &handoffv1.RejectHandoffRequest{Name: f.qualify("lead-2", &eventsv1.LeadAttributes{}).GetName(), Reason: "no"}); err != nil {
			t.Fatal(err)
		}
		// lead-2 was assigned (subscribed); its rejection is not subscribed.
		if n, err := worker.DeliverDue(context.Background()); err != nil || n != 1 {
			t.Fatalf("delivered %d, %v; want 1", n, err)
		}
		if _, bad := rcv.payloads(); len(bad) > 0 {
			t.Fatalf("old secret failed to verify: %v", bad)
		}
	})
}

func TestWebhookDeadLetterAndRedrive(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	rcv := newReceiver(t, f.clock.Now)
	rcv.fail.Store(true)
	sub := f.subscribe(rcv.srv.URL, 3, handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_HANDOFF_ASSIGNED)
	rcv.secret.Store(sub.GetSecret())
	worker := dispatch.New(f.app.Store, rcv.srv.Client(), f.clock.Now, logging.Discard())
	f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})

	deliveries := func(state handoffv1.WebhookDelivery_State) []*handoffv1.WebhookDelivery {
		t.Helper()
		resp, err := f.client.ListWebhookDeliveries(f.ctx, &handoffv1.ListWebhookDeliveriesRequest{
			Parent: sub.GetWebhookSubscription().GetName(), State: state,
		})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetWebhookDeliveries()
	}
	pass := func(want int) {
		t.Helper()
		n, err := worker.DeliverDue(context.Background())
		if err != nil || n != want {
			t.Fatalf("pass attempted %d, %v; want %d", n, err, want)
		}
	}

	pass(1)
	pending := deliveries(handoffv1.WebhookDelivery_STATE_PENDING)
	if len(pending) != 1 || pending[0].GetAttemptCount() != 1 || pending[0].GetAttempts()[0].GetHttpStatusCode() != 503 {
		t.Fatalf("after one failure = %v", pending)
	}
	next := pending[0].GetNextAttemptTime().AsTime()
	if !next.After(f.clock.Now()) {
		t.Fatalf("next attempt %v is not after now", next)
	}
	pass(0) // not due yet: backoff
	f.clock.Advance(time.Hour)
	pass(1)
	f.clock.Advance(time.Hour)
	pass(1)
	f.clock.Advance(24 * time.Hour)
	pass(0) // dead-lettered after 3 attempts: nothing more

	dead := deliveries(handoffv1.WebhookDelivery_STATE_DEAD_LETTERED)
	if len(dead) != 1 || dead[0].GetAttemptCount() != 3 || len(dead[0].GetAttempts()) != 3 || dead[0].GetCompleteTime() == nil {
		t.Fatalf("dead-lettered = %v", dead)
	}
	if _, bad := rcv.payloads(); len(bad) > 0 {
		t.Fatalf("signatures failed: %v", bad)
	}

	_, err := f.client.RedriveWebhookDelivery(f.other, &handoffv1.RedriveWebhookDeliveryRequest{Name: dead[0].GetName()})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("redrive from another workspace: code = %v, want NotFound", status.Code(err))
	}
	rcv.fail.Store(false)
	red, err := f.client.RedriveWebhookDelivery(f.ctx, &handoffv1.RedriveWebhookDeliveryRequest{Name: dead[0].GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if d := red.GetWebhookDelivery(); d.GetState() != handoffv1.WebhookDelivery_STATE_PENDING || d.GetRedriveCount() != 1 {
		t.Fatalf("redriven = %v", d)
	}
	pass(1)
	got, err := f.client.GetWebhookDelivery(f.ctx, &handoffv1.GetWebhookDeliveryRequest{Name: dead[0].GetName()})
	if err != nil {
		t.Fatal(err)
	}
	if d := got.GetWebhookDelivery(); d.GetState() != handoffv1.WebhookDelivery_STATE_SUCCEEDED || d.GetAttemptCount() != 4 {
		t.Fatalf("after redrive = %v", d)
	}
	payloads, _ := rcv.payloads()
	if len(payloads) != 1 || payloads[0].GetId() != got.GetWebhookDelivery().GetEventId() {
		t.Fatalf("receiver got %v, want the original payload id once", payloads)
	}
	_, err = f.client.RedriveWebhookDelivery(f.ctx, &handoffv1.RedriveWebhookDeliveryRequest{Name: dead[0].GetName()})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("redrive of a succeeded delivery: code = %v, want FailedPrecondition", status.Code(err))
	}
}

func TestWebhookBreachEvents(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	rcv := newReceiver(t, f.clock.Now)
	sub := f.subscribe(rcv.srv.URL, 0, handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_SLA_BREACHED,
		handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_HANDOFF_ASSIGNED)
	rcv.secret.Store(sub.GetSecret())
	worker := dispatch.New(f.app.Store, rcv.srv.Client(), f.clock.Now, logging.Discard())
	h := f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})
	f.clock.Advance(25 * time.Hour) // default SLA: 24h, reassign
	if n := f.fire(f.app); n != 1 {
		t.Fatalf("fired %d", n)
	}
	if n, err := worker.DeliverDue(context.Background()); err != nil || n != 3 {
		t.Fatalf("delivered %d, %v; want assigned, breached, reassigned", n, err)
	}
	payloads, bad := rcv.payloads()
	if len(bad) > 0 {
		t.Fatal(bad)
	}
	var breach *handoffv1.SlaBreach
	for _, p := range payloads {
		if p.GetEventType() == handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_SLA_BREACHED {
			breach = p.GetSlaBreach()
		}
	}
	if breach.GetHandoff() != h.GetName() || breach.GetOwner() != "owners/anna" || breach.GetAction() != handoffv1.SlaBreach_ACTION_REASSIGNED {
		t.Fatalf("breach payload = %v", breach)
	}
}

// violatesField reports whether err is INVALID_ARGUMENT with a violation of
// field.
func violatesField(err error, field string) bool {
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		return false
	}
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetField() == field {
					return true
				}
			}
		}
	}
	return false
}

func TestWebhookURLMustBePublic(t *testing.T) {
	create := func(f *fixture, id, url string) error {
		_, err := f.client.CreateWebhookSubscription(f.ctx, &handoffv1.CreateWebhookSubscriptionRequest{
			WebhookSubscriptionId: id,
			WebhookSubscription: &handoffv1.WebhookSubscription{Url: url,
				EventTypes: []handoffv1.WebhookEventType{handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_HANDOFF_ASSIGNED}},
		})
		return err
	}
	// https:// URLs reach the address rule; http:// ones are already refused
	// by the https-only field rule, and are here so that stays true.
	refused := []string{
		"https://169.254.169.254/latest/meta-data/",
		"https://localhost:8080/",
		"https://api.localhost/hooks",
		"https://127.0.0.1:8443/",
		"https://[::1]/",
		"https://[::ffff:a00:1]/", // 10.0.0.1
		"https://10.1.2.3/hooks",
		"https://100.64.0.1/",
		"https://2130706433/",
		"http://169.254.169.254/",
		"http://localhost:8080/",
	}

	t.Run("by default", func(t *testing.T) {
		f := newFixtureWith(t, app.Options{})
		for _, url := range refused {
			if err := create(f, "bad", url); !violatesField(err, "webhook_subscription.url") {
				t.Errorf("create %s: %v, want INVALID_ARGUMENT on webhook_subscription.url", url, err)
			}
		}
		list, err := f.client.ListWebhookSubscriptions(f.ctx, &handoffv1.ListWebhookSubscriptionsRequest{})
		if err != nil || len(list.GetWebhookSubscriptions()) != 0 {
			t.Fatalf("stored after refusals: %v, %v", list, err)
		}

		// A name is not resolved at creation: the dial-time guard decides it.
		const public = "https://crm.example.com/hooks"
		if err := create(f, "crm", public); err != nil {
			t.Fatalf("create %s: %v", public, err)
		}
		got, err := f.client.GetWebhookSubscription(f.ctx, &handoffv1.GetWebhookSubscriptionRequest{Name: "webhookSubscriptions/crm"})
		if err != nil {
			t.Fatal(err)
		}
		sub := got.GetWebhookSubscription()
		_, err = f.client.UpdateWebhookSubscription(f.ctx, &handoffv1.UpdateWebhookSubscriptionRequest{
			WebhookSubscription: &handoffv1.WebhookSubscription{Name: sub.GetName(), Etag: sub.GetEtag(),
				Url: "https://169.254.169.254/"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"url"}},
		})
		if !violatesField(err, "webhook_subscription.url") {
			t.Fatalf("update to the metadata address: %v, want INVALID_ARGUMENT on webhook_subscription.url", err)
		}
		after, err := f.client.GetWebhookSubscription(f.ctx, &handoffv1.GetWebhookSubscriptionRequest{Name: sub.GetName()})
		if err != nil || after.GetWebhookSubscription().GetUrl() != public ||
			after.GetWebhookSubscription().GetEtag() != sub.GetEtag() {
			t.Fatalf("after a refused update = %v, %v; want it unchanged", after, err)
		}
	})

	t.Run("with private networks allowed", func(t *testing.T) {
		f := newFixture(t)
		for i, url := range refused[:len(refused)-2] {
			if err := create(f, fmt.Sprintf("dev-%d", i), url); err != nil {
				t.Errorf("create %s: %v", url, err)
			}
		}
	})
}

func TestWebhookDeliveryRefusedAtDial(t *testing.T) {
	// The subscription names loopback, as a public name that resolves to a
	// private address would after passing the creation check.
	f := newFixture(t)
	setUpRouting(f)
	rcv := newReceiver(t, f.clock.Now)
	sub := f.subscribe(rcv.srv.URL, 0, handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_HANDOFF_ASSIGNED)
	rcv.secret.Store(sub.GetSecret())
	worker := dispatch.New(f.app.Store, nil, f.clock.Now, logging.Discard())
	f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})

	if n, err := worker.DeliverDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("delivered %d, %v; want 1", n, err)
	}
	if payloads, bad := rcv.payloads(); len(payloads)+len(bad) > 0 {
		t.Fatalf("the receiver on loopback was reached: %d payloads, %v", len(payloads), bad)
	}
	resp, err := f.client.ListWebhookDeliveries(f.ctx, &handoffv1.ListWebhookDeliveriesRequest{
		Parent: sub.GetWebhookSubscription().GetName(), State: handoffv1.WebhookDelivery_STATE_PENDING,
	})
	if err != nil {
		t.Fatal(err)
	}
	ds := resp.GetWebhookDeliveries()
	if len(ds) != 1 || ds[0].GetAttemptCount() != 1 {
		t.Fatalf("pending deliveries = %v; want one with a failed attempt", ds)
	}
	a := ds[0].GetAttempts()[0]
	if a.GetHttpStatusCode() != 0 || !strings.Contains(a.GetError(), "destination address not allowed") ||
		strings.Contains(a.GetError(), "127.0.0.1") {
		t.Fatalf("attempt = %v; want the refusal, without the address", a)
	}
}

// A failed attempt is recorded and logged with the URL cut to its host:
// receivers put tokens in the path and the query string.
func TestWebhookAttemptErrorHidesTheURLsTokens(t *testing.T) {
	f := newFixture(t)
	setUpRouting(f)
	rcv := newReceiver(t, f.clock.Now)
	sub := f.subscribe(rcv.srv.URL+"/hooks/p4th-token?token=s3cret-token", 0, handoffv1.WebhookEventType_WEBHOOK_EVENT_TYPE_HANDOFF_ASSIGNED)
	client := rcv.srv.Client()
	rcv.srv.Close() // every attempt now fails in the transport, quoting the URL
	var logs bytes.Buffer
	worker := dispatch.New(f.app.Store, client, f.clock.Now, slog.New(slog.NewJSONHandler(&logs, nil)))
	f.qualify("lead-1", &eventsv1.LeadAttributes{Country: "DE"})

	if n, err := worker.DeliverDue(context.Background()); err != nil || n != 1 {
		t.Fatalf("delivered %d, %v; want 1", n, err)
	}
	resp, err := f.client.ListWebhookDeliveries(f.ctx, &handoffv1.ListWebhookDeliveriesRequest{
		Parent: sub.GetWebhookSubscription().GetName(), State: handoffv1.WebhookDelivery_STATE_PENDING,
	})
	if err != nil || len(resp.GetWebhookDeliveries()) != 1 {
		t.Fatalf("pending deliveries = %v, %v; want one", resp, err)
	}
	a := resp.GetWebhookDeliveries()[0].GetAttempts()[0]
	host := strings.TrimPrefix(rcv.srv.URL, "http://")
	if e := a.GetError(); !strings.Contains(e, host) || strings.Contains(e, "s3cret") || strings.Contains(e, "p4th") {
		t.Fatalf("attempt error %q: want the failure and the host, not the tokens", e)
	}
	if strings.Contains(logs.String(), "s3cret") || strings.Contains(logs.String(), "p4th") {
		t.Fatalf("the token reached the logs:\n%s", logs.String())
	}
}
