// Package dispatch posts webhook deliveries to their endpoints: signed,
// with a bounded timeout, retried with backoff and dead-lettered after the
// subscription's attempt budget.
package dispatch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/handoff/internal/egress"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
	"github.com/leadflow/leadflow/services/handoff/webhook"
)

// Limits of one pass.
const (
	// Timeout bounds one HTTP attempt: a 2xx within it is a success.
	Timeout = 10 * time.Second
	// lease is how long a claimed delivery is hidden from other workers; a
	// worker that dies mid-attempt leaves it to be retried after that.
	lease       = time.Minute
	batchSize   = 50
	parallelism = 8
	// maxErrorLen bounds the stored transport error.
	maxErrorLen = 500
	// refusedError is the attempt's error when the endpoint resolves to an
	// address webhooks may not reach.
	refusedError = "destination address not allowed: the endpoint resolves to a loopback, private, link-local or other non-public address"
)

// Worker delivers due webhooks.
type Worker struct {
	store  handoff.WebhookStore
	client *http.Client
	now    handoff.Clock
	log    *slog.Logger
}

// New returns a worker posting with client and telling time with now
// (time.Now when nil). A nil client is egress.NewClient(Timeout, false):
// public addresses only.
func New(store handoff.WebhookStore, client *http.Client, now handoff.Clock, log *slog.Logger) *Worker {
	if client == nil {
		client = egress.NewClient(Timeout, false)
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Worker{store: store, client: client, now: now, log: log}
}

// DeliverDue is one pass: it claims the deliveries due at the clock's now,
// posts them and records each outcome, and returns how many it attempted.
func (w *Worker) DeliverDue(ctx context.Context) (int, error) {
	now := w.now().UTC().Truncate(time.Microsecond)
	claims, err := w.store.ClaimDeliveries(ctx, now, lease, batchSize)
	if err != nil {
		return 0, fmt.Errorf("claim webhook deliveries: %w", err)
	}
	sem := make(chan struct{}, parallelism)
	var wg sync.WaitGroup
	errs := make([]error, len(claims))
	for i, c := range claims {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = w.deliver(ctx, c, now)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return len(claims), err
		}
	}
	return len(claims), nil
}

func (w *Worker) deliver(ctx context.Context, c handoff.Claim, now time.Time) error {
	d := c.Delivery
	a := w.post(ctx, c, now)
	d.Record(a, c.MaxAttempts)
	ok, err := w.store.UpdateDelivery(ctx, d, c.ClaimedCount)
	if err != nil {
		return fmt.Errorf("record delivery %s: %w", d.ID, err)
	}
	if !ok {
		// Redriven or deleted meanwhile: the newer state wins.
		return nil
	}
	switch d.State {
	case handoff.DeliveryDeadLettered:
		w.log.Warn("webhook delivery dead-lettered", "workspace", d.Workspace, "subscription", d.Subscription,
			"delivery", d.ID, "attempts", d.AttemptCount, "status", a.Status, "error", a.Error)
	case handoff.DeliveryPending:
		w.log.Info("webhook delivery failed", "workspace", d.Workspace, "subscription", d.Subscription,
			"delivery", d.ID, "attempt", d.AttemptCount, "status", a.Status, "error", a.Error)
	}
	return nil
}

// post makes one attempt. The response body is drained, never kept.
func (w *Worker) post(ctx context.Context, c handoff.Claim, now time.Time) handoff.Attempt {
	a := handoff.Attempt{Time: now}
	ctx, cancel := context.WithTimeout(ctx, Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL, bytes.NewReader(c.Delivery.Payload))
	if err != nil {
		a.Error = "invalid webhook URL" // the parse error would quote it whole
		return a
	}
	req.Header = webhook.Headers(c.Delivery.EventID, now, c.Delivery.Payload, c.Secrets...)
	req.Header.Set("User-Agent", "Leadflow-Webhooks/1")
	start := time.Now()
	resp, err := w.client.Do(req)
	a.Duration = time.Since(start)
	if errors.Is(err, egress.ErrNotAllowed) {
		// One plain message instead of the dial error with its resolved
		// address: it says what to fix and reveals nothing of the network.
		a.Error = refusedError
		return a
	}
	if err != nil {
		a.Error = attemptError(err)
		return a
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	a.Status = resp.StatusCode
	return a
}

// attemptError describes a failed attempt for the delivery's record and the
// logs. The client's error quotes the URL: it is cut to scheme and host, as
// the path, query string and user info are where receivers put tokens
// (chat webhooks carry theirs in the path).
func attemptError(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		err = fmt.Errorf("%s %s: %w", ue.Op, redactURL(ue.URL), ue.Err)
	}
	return postgres.Text(err.Error(), maxErrorLen)
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "the webhook URL"
	}
	return u.Scheme + "://" + u.Host
}
