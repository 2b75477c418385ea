package handoff

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net/url"
	"time"

	"github.com/leadflow/leadflow/pkg/apperr"
	"github.com/leadflow/leadflow/services/handoff/internal/egress"
)

// Webhook defaults and limits.
const (
	DefaultMaxAttempts = 10
	// SecretOverlap is how long a rotated-out secret keeps signing.
	SecretOverlap = 24 * time.Hour
	// keptAttempts is how many attempts a delivery keeps, newest first.
	keptAttempts    = 25
	secretPrefixLen = 12
)

// Subscription sends handoff events to an HTTPS endpoint.
type Subscription struct {
	Workspace   string
	ID          string
	DisplayName string
	URL         string
	EventTypes  []EventType
	MaxAttempts int
	Disabled    bool
	// Secret signs deliveries; it is shown once and never logged.
	Secret string
	// PreviousSecret signs too until PreviousExpire (after a rotation).
	PreviousSecret string
	PreviousExpire *time.Time
	CreateTime     time.Time
	UpdateTime     time.Time
	Version        int64
}

// SecretPrefix is the start of the secret, to tell secrets apart.
func (s Subscription) SecretPrefix() string {
	return s.Secret[:min(len(s.Secret), secretPrefixLen)]
}

// Secrets returns the secrets that sign at now, the current one first.
func (s Subscription) Secrets(now time.Time) []string {
	out := []string{s.Secret}
	if s.PreviousSecret != "" && s.PreviousExpire != nil && now.Before(*s.PreviousExpire) {
		out = append(out, s.PreviousSecret)
	}
	return out
}

func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "whsec_" + base64.RawURLEncoding.EncodeToString(b)
}

// DeliveryState is a delivery's state; the values match
// leadflow.handoff.v1.WebhookDelivery.State.
type DeliveryState int

// The delivery states.
const (
	DeliveryPending      DeliveryState = 1
	DeliverySucceeded    DeliveryState = 2
	DeliveryDeadLettered DeliveryState = 3
)

// Attempt is one HTTP attempt of a delivery. Response bodies are never kept.
type Attempt struct {
	Time     time.Time     `json:"t"`
	Status   int           `json:"s,omitempty"`
	Error    string        `json:"e,omitempty"`
	Duration time.Duration `json:"d"`
}

// OK reports whether the attempt succeeded (a 2xx answer).
func (a Attempt) OK() bool { return a.Error == "" && a.Status >= 200 && a.Status < 300 }

// Delivery is one event's delivery to one subscription.
type Delivery struct {
	Workspace    string
	Subscription string
	ID           string
	EventID      string
	EventType    EventType
	Handoff      string
	// Payload is the JSON body, fixed when the event happened.
	Payload      []byte
	State        DeliveryState
	AttemptCount int
	// BudgetUsed counts the failed attempts since creation or the last redrive.
	BudgetUsed      int
	Attempts        []Attempt
	NextAttemptTime *time.Time
	RedriveCount    int
	CreateTime      time.Time
	CompleteTime    *time.Time
}

// Backoff is the wait after the n-th failed attempt: 30s doubling, capped
// at 6h.
func Backoff(n int) time.Duration {
	d := 30 * time.Second << min(max(n-1, 0), 20)
	return min(d, 6*time.Hour)
}

// Record adds attempt a: success completes the delivery; a failure
// schedules the next attempt with backoff, or dead-letters the delivery
// once maxAttempts failed.
func (d *Delivery) Record(a Attempt, maxAttempts int) {
	d.AttemptCount++
	d.Attempts = append([]Attempt{a}, d.Attempts...)
	if len(d.Attempts) > keptAttempts {
		d.Attempts = d.Attempts[:keptAttempts]
	}
	end := a.Time.Add(a.Duration)
	if a.OK() {
		d.State, d.CompleteTime, d.NextAttemptTime = DeliverySucceeded, &end, nil
		return
	}
	d.BudgetUsed++
	if d.BudgetUsed >= maxAttempts {
		d.State, d.CompleteTime, d.NextAttemptTime = DeliveryDeadLettered, &end, nil
		return
	}
	next := end.Add(Backoff(d.BudgetUsed))
	d.NextAttemptTime = &next
}

// DeliveryFilter narrows ListDeliveries.
type DeliveryFilter struct {
	// Subscription is empty for all of the workspace's.
	Subscription string
	State        DeliveryState
	Handoff      string
}

// Claim is a delivery taken by a worker, with what it needs to send it.
type Claim struct {
	Delivery     Delivery
	URL          string
	MaxAttempts  int
	Secrets      []string
	ClaimedCount int
}

// WebhookStore persists webhook subscriptions and deliveries.
type WebhookStore interface {
	CreateSubscription(ctx context.Context, s Subscription, requestID string) (Subscription, error)
	GetSubscription(ctx context.Context, workspace, id string) (Subscription, error)
	ListSubscriptions(ctx context.Context, workspace string, after *NameCursor, limit int) ([]Subscription, error)
	// UpdateSubscription writes s if its stored version is still s.Version.
	UpdateSubscription(ctx context.Context, s Subscription, at time.Time) (Subscription, error)
	DeleteSubscription(ctx context.Context, workspace, id string, version int64) error
	ListDeliveries(ctx context.Context, workspace string, f DeliveryFilter, after *TimeCursor, limit int) ([]Delivery, error)
	GetDelivery(ctx context.Context, workspace, subscription, id string, forUpdate bool) (Delivery, error)
	// UpdateDelivery writes d if its attempt count is still
	// expectAttempts, reporting whether it did.
	UpdateDelivery(ctx context.Context, d Delivery, expectAttempts int) (bool, error)
	// ClaimDeliveries leases up to limit pending deliveries due at or before
	// now, of enabled subscriptions, until now+lease, skipping rows other
	// workers hold.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Claim, error)
}

// checkURL refuses an endpoint that names localhost or a non-public
// address. Names are not resolved here, as rebinding would make that
// pointless: the dispatcher checks every address it connects to.
func (s *Service) checkURL(raw string) error {
	if s.allowPrivateWebhooks {
		return nil
	}
	if u, err := url.Parse(raw); err != nil || !egress.PublicHost(u.Hostname()) {
		return apperr.InvalidArgument("webhook url is not allowed", apperr.Field("webhook_subscription.url",
			"must be a public endpoint, not localhost or a loopback, private or link-local address"))
	}
	return nil
}

// CreateSubscription registers an endpoint and returns it with its secret.
// A retry with the same requestID returns the original.
func (s *Service) CreateSubscription(ctx context.Context, sub Subscription, requestID string) (Subscription, error) {
	if err := s.checkURL(sub.URL); err != nil {
		return Subscription{}, err
	}
	now := s.Now()
	if sub.ID == "" {
		sub.ID = shortID()
	}
	if sub.MaxAttempts == 0 {
		sub.MaxAttempts = DefaultMaxAttempts
	}
	sub.Secret = newSecret()
	sub.CreateTime, sub.UpdateTime, sub.Version = now, now, 1
	return s.store.CreateSubscription(ctx, sub, requestID)
}

// GetSubscription returns a subscription (the caller must not show its
// secret).
func (s *Service) GetSubscription(ctx context.Context, workspace, id string) (Subscription, error) {
	return s.store.GetSubscription(ctx, workspace, id)
}

// ListSubscriptions pages through subscriptions by id.
func (s *Service) ListSubscriptions(ctx context.Context, workspace string, after *NameCursor, limit int) ([]Subscription, error) {
	return s.store.ListSubscriptions(ctx, workspace, after, limit)
}

// UpdateSubscription applies change, guarded by etag.
func (s *Service) UpdateSubscription(ctx context.Context, workspace, id, etag string, change func(*Subscription)) (Subscription, error) {
	sub, err := s.store.GetSubscription(ctx, workspace, id)
	if err != nil {
		return Subscription{}, err
	}
	if err := checkEtag(etag, sub.Version); err != nil {
		return Subscription{}, err
	}
	oldURL := sub.URL
	change(&sub)
	// Only a new URL is checked, so a subscription stored before the rule
	// can still be renamed, disabled or rotated.
	if sub.URL != oldURL {
		if err := s.checkURL(sub.URL); err != nil {
			return Subscription{}, err
		}
	}
	sub.Workspace, sub.ID = workspace, id
	if sub.MaxAttempts == 0 {
		sub.MaxAttempts = DefaultMaxAttempts
	}
	return s.store.UpdateSubscription(ctx, sub, s.Now())
}

// DeleteSubscription removes a subscription with its deliveries.
func (s *Service) DeleteSubscription(ctx context.Context, workspace, id, etag string) error {
	sub, err := s.store.GetSubscription(ctx, workspace, id)
	if err != nil {
		return err
	}
	if err := checkEtag(etag, sub.Version); err != nil {
		return err
	}
	return s.store.DeleteSubscription(ctx, workspace, id, sub.Version)
}

// RotateSecret issues a new secret; the old one signs alongside for
// SecretOverlap.
func (s *Service) RotateSecret(ctx context.Context, workspace, id, etag string) (Subscription, error) {
	now := s.Now()
	return s.UpdateSubscription(ctx, workspace, id, etag, func(sub *Subscription) {
		expire := now.Add(SecretOverlap)
		sub.PreviousSecret, sub.PreviousExpire, sub.Secret = sub.Secret, &expire, newSecret()
	})
}

// ListDeliveries pages through deliveries, newest first.
func (s *Service) ListDeliveries(ctx context.Context, workspace string, f DeliveryFilter, after *TimeCursor, limit int) ([]Delivery, error) {
	return s.store.ListDeliveries(ctx, workspace, f, after, limit)
}

// GetDelivery returns one delivery.
func (s *Service) GetDelivery(ctx context.Context, workspace, subscription, id string) (Delivery, error) {
	return s.store.GetDelivery(ctx, workspace, subscription, id, false)
}

// Redrive sends a dead-lettered delivery again with a fresh attempt budget.
func (s *Service) Redrive(ctx context.Context, workspace, subscription, id string) (Delivery, error) {
	now := s.Now()
	d, err := s.store.GetDelivery(ctx, workspace, subscription, id, false)
	if err != nil {
		return Delivery{}, err
	}
	if d.State != DeliveryDeadLettered {
		return Delivery{}, ErrDeliveryNotDead
	}
	expect := d.AttemptCount
	d.State, d.BudgetUsed, d.CompleteTime, d.NextAttemptTime = DeliveryPending, 0, nil, &now
	d.RedriveCount++
	ok, err := s.store.UpdateDelivery(ctx, d, expect)
	if err != nil {
		return Delivery{}, err
	}
	if !ok {
		return Delivery{}, ErrStaleEtag
	}
	return d, nil
}
