package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/leadflow/leadflow/gen/go/leadflow/events/v1"
	"github.com/leadflow/leadflow/pkg/postgres"
)

// Sink delivers one event to one subscriber. A nil error means the
// subscriber durably accepted it.
type Sink interface {
	Deliver(ctx context.Context, ev *eventsv1.Event) error
}

// BatchSink is a Sink that also takes several events in one call, handling
// all of them or, when it returns an error, none.
type BatchSink interface {
	Sink
	DeliverBatch(ctx context.Context, evs []*eventsv1.Event) error
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(ctx context.Context, ev *eventsv1.Event) error

// Deliver implements Sink.
func (f SinkFunc) Deliver(ctx context.Context, ev *eventsv1.Event) error { return f(ctx, ev) }

// RelayOptions tune a Relay; zero values take the defaults.
type RelayOptions struct {
	Logger *slog.Logger
	// BatchSize is how many events one pass claims (default 100); a
	// bundle counts as its events, and a pass takes at least one row.
	BatchSize int
	// Parallelism bounds concurrent deliveries within a pass (default 8).
	Parallelism int
	// Lanes is how many passes run side by side (default 2; rows are
	// spread over 8 shards, so more than 8 lanes are idle). Each lane
	// takes the events of its own share of leads, so a relay still hands
	// out one lead's events in order, one pass after another (bar retries).
	// Replicas each run their own lanes: two replicas may hold events of
	// one lead at the same time, as they always could.
	Lanes int
	// DeliverTimeout bounds one delivery (default 10s).
	DeliverTimeout time.Duration
	// PollInterval is the longest the relay sleeps without a notification,
	// a safety net for missed NOTIFYs (default 5s).
	PollInterval time.Duration
	// MaxBackoff caps the retry delay of a failing delivery (default 5m).
	MaxBackoff time.Duration
	// Lease is how long a pass holds its events before another pass may
	// take them (default 30s). A pass renews it while it runs, so a lease
	// only runs out when its relay died or lost the database: that long,
	// at most, its events wait for another pass.
	Lease time.Duration
}

// DefaultLease is RelayOptions.Lease unless set.
const DefaultLease = 30 * time.Second

// Relay moves events from a service's outbox to their subscribers.
type Relay struct {
	pool    *pgxpool.Pool
	channel string
	sinks   map[string]Sink
	opts    RelayOptions
	tracer  trace.Tracer
}

// NewRelay returns a relay for the outbox in schema. sinks maps subscriber
// names (as used in Routes) to their delivery.
func NewRelay(pool *pgxpool.Pool, schema string, sinks map[string]Sink, opts RelayOptions) *Relay {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	if opts.Parallelism <= 0 {
		opts.Parallelism = 8
	}
	if opts.Lanes <= 0 {
		opts.Lanes = 2
	}
	if opts.DeliverTimeout <= 0 {
		opts.DeliverTimeout = 10 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.Lease <= 0 {
		opts.Lease = DefaultLease
	}
	return &Relay{
		pool: pool, channel: Channel(schema), sinks: sinks, opts: opts,
		tracer: otel.Tracer(tracerName),
	}
}

// Run delivers until ctx ends. It survives database restarts: on a lost
// connection it backs off and listens again. While it runs, the outbox's
// backlog, lag and parked events are reported as metrics.
func (r *Relay) Run(ctx context.Context) error {
	subscribers := make([]string, 0, len(r.sinks))
	for s := range r.sinks {
		subscribers = append(subscribers, s)
	}
	if reg, err := instrument(r.pool, subscribers); err != nil {
		r.opts.Logger.Warn("outbox metrics unavailable", "error", err)
	} else {
		defer reg.Unregister() //nolint:errcheck // nothing to do about it at shutdown
	}
	for {
		err := r.listenAndDeliver(ctx)
		if ctx.Err() != nil {
			return nil
		}
		r.opts.Logger.Warn("outbox relay restarting", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

func (r *Relay) listenAndDeliver(ctx context.Context) error {
	pooled, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire listen connection: %w", err)
	}
	// The LISTEN connection is left in an unknown state, so it is taken out
	// of the pool for good and closed when the relay stops listening. (A
	// deferred pooled.Hijack().Close() would hijack at once, before use.)
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{r.channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	// A lane's error, or the listener's, stops every lane from starting
	// another pass, but lets passes under way finish: cutting their
	// deliveries short would only have them delivered again. Passes end
	// early only when the relay is shut down (ctx).
	stopping, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	wake := make([]chan struct{}, r.opts.Lanes)
	var lanes sync.WaitGroup
	for lane := range wake {
		wake[lane] = make(chan struct{}, 1)
		lanes.Go(func() {
			for stopping.Err() == nil {
				n, err := r.deliverDue(ctx, lane, len(wake))
				if err != nil {
					stop(err)
					return
				}
				if n >= r.opts.BatchSize {
					continue // more may be due right now
				}
				select {
				case <-stopping.Done():
				case <-wake[lane]:
				}
			}
		})
	}
	// Wake every lane on a notification, or when the earliest retry falls due.
	for stopping.Err() == nil {
		wait, err := r.untilNextDue(stopping)
		if err != nil {
			stop(err)
			break
		}
		waitCtx, cancel := context.WithTimeout(stopping, wait)
		_, err = conn.WaitForNotification(waitCtx)
		cancel()
		if stopping.Err() == nil && err != nil && !errors.Is(err, context.DeadlineExceeded) {
			stop(fmt.Errorf("wait for notification: %w", err))
			break
		}
		for _, w := range wake {
			select {
			case w <- struct{}{}:
			default: // awake already
			}
		}
	}
	lanes.Wait()
	return context.Cause(stopping)
}

// untilNextDue is how long to sleep before the earliest retry falls due.
func (r *Relay) untilNextDue(ctx context.Context) (time.Duration, error) {
	const q = `SELECT min(next_attempt_time) - now() FROM outbox WHERE dead_time IS NULL`
	var d *time.Duration
	if err := r.pool.QueryRow(ctx, q).Scan(&d); err != nil {
		return 0, fmt.Errorf("next due: %w", err)
	}
	if d == nil || *d > r.opts.PollInterval {
		return r.opts.PollInterval, nil
	}
	return max(*d, 10*time.Millisecond), nil
}

// pending is one leased row: an event, or a bundle of them, and the
// subscribers still owed it.
type pending struct {
	id          int64
	subscribers []string
	attempts    int
	bundle      bool
	raw         [][]byte          // one event, or a bundle's (nil where blanked)
	events      []*eventsv1.Event // decoded, nil where blanked or undecodable
	errs        [][]error         // per event and subscriber, after delivery
}

// DeliverDue makes one pass: it leases up to BatchSize due events in a short
// transaction (skipping rows another replica holds; a bundle counts as its
// events, and the first row is leased whatever its size), delivers each to
// the subscribers still owed it with no transaction open, and records the
// outcomes in a second short one. It returns how many events it leased.
//
// No lock is held across the network calls, so a slow subscriber cannot
// stall writers of the same rows (an erasure dropping a lead's events, say).
// The pass renews its lease while it delivers, and retries recording until
// the database takes it or the lease has run out. A relay that dies
// mid-pass leaves its rows leased until the lease runs out; they are then
// delivered again, which receivers' inboxes make harmless.
func (r *Relay) DeliverDue(ctx context.Context) (int, error) {
	return r.deliverDue(ctx, 0, 1)
}

// deliverDue is DeliverDue for one of lanes lanes: only the events of the
// shards that fall to lane.
func (r *Relay) deliverDue(ctx context.Context, lane, lanes int) (int, error) {
	var batch []*pending
	leased := time.Now() // no later than the database's lease starts
	err := postgres.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		// The window runs over the rows locked below it: FOR UPDATE cannot
		// share a level with it.
		const claim = `
UPDATE outbox o SET next_attempt_time = now() + $2::interval
  FROM (SELECT id FROM (
          SELECT id, sum(event_count) OVER (ORDER BY id) - event_count AS before
            FROM (SELECT id, event_count FROM outbox
                   WHERE dead_time IS NULL AND next_attempt_time <= now() AND shard % $3 = $4
                   ORDER BY id
                   LIMIT $1
                     FOR UPDATE SKIP LOCKED) locked) counted
         WHERE before < $1) due
 WHERE o.id = due.id
RETURNING o.id, o.subscribers, o.event, o.events, o.attempts`
		rows, err := tx.Query(ctx, claim, r.opts.BatchSize, r.opts.Lease, lanes, lane)
		if err != nil {
			return fmt.Errorf("lease outbox rows: %w", err)
		}
		batch, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (*pending, error) {
			p := &pending{}
			var event []byte
			if err := row.Scan(&p.id, &p.subscribers, &event, &p.raw, &p.attempts); err != nil {
				return nil, err
			}
			p.bundle = p.raw != nil
			if !p.bundle {
				p.raw = [][]byte{event}
			}
			return p, nil
		})
		if err != nil {
			return fmt.Errorf("read outbox rows: %w", err)
		}
		return nil
	})
	if err != nil || len(batch) == 0 {
		return 0, err
	}
	eventCount := 0
	for _, p := range batch {
		eventCount += len(p.raw)
	}
	// RETURNING has no order; deliver oldest first.
	slices.SortFunc(batch, func(a, b *pending) int { return cmp.Compare(a.id, b.id) })
	ids := make([]int64, len(batch))
	for i, p := range batch {
		ids[i] = p.id
	}
	stopRenewing := r.renew(ctx, ids)
	r.deliverAll(ctx, batch)
	if last := stopRenewing(); !last.IsZero() {
		leased = last
	}
	// Record even when ctx ended mid-pass: what was delivered stays
	// delivered. Until the lease runs out no other pass takes these rows,
	// so recording is worth retrying that long (the database may be
	// restarting); after that another pass delivers them again.
	deadline := leased.Add(r.opts.Lease)
	if ctx.Err() != nil {
		// Shutting down: one short try, the lease covers the rest.
		deadline = time.Now().Add(5 * time.Second)
	}
	recordCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := postgres.InTx(recordCtx, r.pool, func(tx pgx.Tx) error { return r.record(recordCtx, tx, batch, ids) })
		if err == nil {
			return eventCount, nil
		}
		if ctx.Err() != nil {
			return eventCount, fmt.Errorf("record pass: %w", err) // shutting down: no waiting
		}
		r.opts.Logger.Warn("outbox pass not recorded yet; retrying", "rows", len(batch), "events", eventCount, "error", err)
		select {
		case <-recordCtx.Done():
			return eventCount, fmt.Errorf("record pass: %w", err)
		case <-ctx.Done():
			return eventCount, fmt.Errorf("record pass: %w", err)
		case <-time.After(min(100*time.Millisecond<<min(attempt, 6), 5*time.Second)):
		}
	}
}

// renew extends the lease on ids every third of it until the returned stop
// is called; stop returns when the last renewal that took began (zero if
// none did). A failed renewal is left to the next one.
func (r *Relay) renew(ctx context.Context, ids []int64) (stop func() time.Time) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var last time.Time // written by the goroutine, read after wg.Wait
	wg.Go(func() {
		tick := time.NewTicker(r.opts.Lease / 3)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			at := time.Now()
			const q = `UPDATE outbox SET next_attempt_time = now() + $2::interval WHERE id = ANY($1) AND dead_time IS NULL`
			if _, err := r.pool.Exec(ctx, q, ids, r.opts.Lease); err == nil {
				last = at
			}
		}
	})
	return func() time.Time { cancel(); wg.Wait(); return last }
}

// maxBatchEvents is the most events one DeliverEvents call may carry (the
// request's validation rule says the same).
const maxBatchEvents = 500

// delivery is one event owed to one subscriber in a pass.
type delivery struct {
	ev  *eventsv1.Event
	row *pending
	e   int // the event's index in row.events
	i   int // the subscriber's index in row.subscribers
}

// deliverAll hands every leased event to each of its subscribers. A
// subscriber owed several events whose sink takes batches gets them in one
// call; if that fails, and for other sinks, they go one by one, each lead's
// in order (leads side by side). At most Parallelism calls run at a time.
func (r *Relay) deliverAll(ctx context.Context, batch []*pending) {
	bySubscriber := map[string][]delivery{}
	for _, p := range batch {
		p.events = make([]*eventsv1.Event, len(p.raw))
		p.errs = make([][]error, len(p.raw))
		for e, raw := range p.raw {
			if raw == nil {
				continue // blanked by an erasure
			}
			p.errs[e] = make([]error, len(p.subscribers))
			ev := &eventsv1.Event{}
			if err := proto.Unmarshal(raw, ev); err != nil {
				for i := range p.errs[e] {
					p.errs[e][i] = permanent{fmt.Errorf("decode event: %w", err)}
				}
				continue
			}
			p.events[e] = ev
			for i, sub := range p.subscribers {
				bySubscriber[sub] = append(bySubscriber[sub], delivery{ev: ev, row: p, e: e, i: i})
			}
		}
	}
	sem := make(chan struct{}, r.opts.Parallelism)
	var wg sync.WaitGroup
	oneByOne := func(sub string, ds []delivery) {
		byLead := map[string][]delivery{}
		var leads []string
		for _, d := range ds {
			lead := d.ev.GetLead()
			if byLead[lead] == nil {
				leads = append(leads, lead)
			}
			byLead[lead] = append(byLead[lead], d)
		}
		for _, lead := range leads {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				for _, d := range byLead[lead] {
					d.row.errs[d.e][d.i] = r.deliver(ctx, d.ev, sub, d.row.attempts)
				}
			})
		}
	}
	var batched sync.WaitGroup
	for sub, all := range bySubscriber {
		bs, ok := r.sinks[sub].(BatchSink)
		if !ok || len(all) == 1 {
			oneByOne(sub, all)
			continue
		}
		for ds := range slices.Chunk(all, maxBatchEvents) {
			sem <- struct{}{}
			batched.Go(func() {
				err := r.deliverBatch(ctx, bs, sub, ds)
				<-sem
				if err == nil {
					return
				}
				r.opts.Logger.Warn("outbox batch delivery failed; delivering one by one",
					"subscriber", sub, "events", len(ds), "error", err)
				oneByOne(sub, ds)
			})
		}
	}
	batched.Wait()
	wg.Wait()
}

// deliverBatch hands ds to one subscriber in one call. Its span starts a
// trace of its own, linked to the trace of each event.
func (r *Relay) deliverBatch(ctx context.Context, sink BatchSink, subscriber string, ds []delivery) error {
	evs := make([]*eventsv1.Event, len(ds))
	links := make([]trace.Link, len(ds))
	for i, d := range ds {
		evs[i] = d.ev
		links[i] = trace.LinkFromContext(eventContext(ctx, d.ev))
	}
	ctx, span := r.tracer.Start(ctx, "outbox.deliver_batch",
		trace.WithNewRoot(), trace.WithLinks(links...), trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("leadflow.event.subscriber", subscriber),
			attribute.Int("leadflow.event.count", len(evs)),
		))
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, r.opts.DeliverTimeout)
	defer cancel()
	err := sink.DeliverBatch(ctx, evs)
	if err != nil {
		span.RecordError(err)
	}
	return err
}

// deliver hands ev to one subscriber. attempts is how often delivery of the
// event failed before.
func (r *Relay) deliver(ctx context.Context, ev *eventsv1.Event, subscriber string, attempts int) error {
	sink, ok := r.sinks[subscriber]
	if !ok {
		return fmt.Errorf("no sink configured for subscriber %q", subscriber)
	}
	// Continue the trace of the request that caused the event.
	ctx, span := r.tracer.Start(eventContext(ctx, ev), "outbox.deliver "+ev.GetType(),
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(append(eventAttributes(ev),
			attribute.String("leadflow.event.subscriber", subscriber),
			attribute.Int("leadflow.event.attempt", attempts+1),
		)...))
	defer span.End()
	ctx, cancel := context.WithTimeout(ctx, r.opts.DeliverTimeout)
	defer cancel()
	err := sink.Deliver(ctx, ev)
	if err != nil {
		span.RecordError(err)
		if status.Code(err) == codes.InvalidArgument {
			err = permanent{err}
		}
	}
	return err
}

// tracerName names the spans of this package.
const tracerName = "github.com/leadflow/leadflow/pkg/outbox"

// eventContext is ctx carrying the trace context ev was published under, so
// that spans about ev continue the trace of the request that caused it.
func eventContext(ctx context.Context, ev *eventsv1.Event) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier{
		"traceparent": ev.GetTraceparent(), "tracestate": ev.GetTracestate(),
	})
}

// eventAttributes describe ev on a span: ids and its type, no payload.
func eventAttributes(ev *eventsv1.Event) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("leadflow.event.type", ev.GetType()),
		attribute.String("leadflow.lead_id", ev.GetLead()),
		attribute.String("leadflow.workspace", ev.GetWorkspace()),
	}
}

// permanent marks a delivery that no retry can fix (the receiver refused the
// event itself); such rows are parked with dead_time for an operator.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// record writes a pass's outcomes. Per event, the subscribers that took it
// are done; those that refused it for good are split off into a parked row
// (dead_time set) for an operator; those that failed are retried later with
// backoff. A row nobody is owed anything of any more is deleted. A bundle
// stays whole when all its events failed alike; otherwise what is left of
// it goes back as rows of one event each.
//
// The rows (ids, the batch's) are locked first, then read again: an
// erasure may have dropped a row or blanked events of a bundle since the
// pass leased them (see Forget), and what it removed must not come back.
func (r *Relay) record(ctx context.Context, tx pgx.Tx, batch []*pending, ids []int64) error {
	rows, err := tx.Query(ctx, `SELECT id, event_leads FROM outbox WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
	if err != nil {
		return fmt.Errorf("lock delivered rows: %w", err)
	}
	locked := make(map[int64][]*string, len(batch)) // a bundle's leads; nil where blanked
	var id int64
	var leads []*string
	_, err = pgx.ForEachRow(rows, []any{&id, &leads}, func() error {
		locked[id] = leads
		return nil
	})
	if err != nil {
		return fmt.Errorf("lock delivered rows: %w", err)
	}

	var done []int64
	b := &pgx.Batch{}
	for _, p := range batch {
		leads, ok := locked[p.id]
		if !ok {
			continue // dropped by an erasure meanwhile
		}
		delay := r.backoff(p.attempts + 1)
		r.logFailures(p, delay)
		var left []owed
		live := 0
		for e := range p.raw {
			if p.raw[e] == nil || (p.bundle && leads[e] == nil) {
				continue // blanked by an erasure
			}
			live++
			if o := p.owed(e); len(o.retry)+len(o.parked) > 0 {
				left = append(left, o)
			}
		}
		switch {
		case len(left) == 0:
			done = append(done, p.id)
		case !p.bundle || failedAlike(left, live):
			o := left[0]
			if len(o.parked) > 0 {
				b.Queue(`
INSERT INTO outbox (event_id, workspace_id, subscribers, event_type, event, lead_id, shard,
                    attempts, last_error, create_time, next_attempt_time, dead_time)
SELECT event_id, workspace_id, $2, event_type, event, lead_id, shard,
       attempts + 1, $3, create_time, next_attempt_time, now()
  FROM outbox WHERE id = $1`, p.id, o.parked, truncate(o.parkErr.Error()))
			}
			if len(o.retry) == 0 {
				done = append(done, p.id)
				continue
			}
			b.Queue(`
UPDATE outbox SET subscribers = $2, attempts = attempts + 1, last_error = $3,
                  next_attempt_time = now() + $4::interval
 WHERE id = $1`, p.id, o.retry, truncate(o.retryErr.Error()), delay)
		default:
			// Split the bundle: each event left owed becomes a row of its own.
			const split = `
INSERT INTO outbox (event_id, workspace_id, subscribers, event_type, event, lead_id, shard,
                    attempts, last_error, create_time, next_attempt_time, dead_time)
SELECT coalesce($2::uuid, gen_random_uuid()), workspace_id, $3, event_type, events[$4],
       nullif(event_leads[$4], ''), shard, attempts + 1, $5, create_time,
       now() + $6::interval, CASE WHEN $7 THEN now() END
  FROM outbox WHERE id = $1`
			for _, o := range left {
				var id *string
				if ev := p.events[o.e]; ev != nil {
					id = &ev.Id
				}
				if len(o.parked) > 0 {
					b.Queue(split, p.id, id, o.parked, o.e+1, truncate(o.parkErr.Error()), delay, true)
				}
				if len(o.retry) > 0 {
					b.Queue(split, p.id, id, o.retry, o.e+1, truncate(o.retryErr.Error()), delay, false)
				}
			}
			done = append(done, p.id)
		}
	}
	if len(done) > 0 {
		b.Queue(`DELETE FROM outbox WHERE id = ANY($1)`, done)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("record deliveries: %w", err)
	}
	return nil
}

// owed is what one event of a pass is still owed: the subscribers to retry
// and those that refused it for good, each with the first error.
type owed struct {
	e                 int
	retry, parked     []string
	retryErr, parkErr error
}

// owed sorts the subscribers of event e by how its delivery went.
func (p *pending) owed(e int) owed {
	o := owed{e: e}
	for i, sub := range p.subscribers {
		switch err := p.errs[e][i]; {
		case err == nil:
		case errors.As(err, new(permanent)):
			o.parked, o.parkErr = append(o.parked, sub), cmp.Or(o.parkErr, err)
		default:
			o.retry, o.retryErr = append(o.retry, sub), cmp.Or(o.retryErr, err)
		}
	}
	return o
}

// failedAlike reports whether every one of a bundle's live events is owed
// the same, with none refused: the bundle can then be retried whole.
func failedAlike(left []owed, live int) bool {
	if len(left) != live {
		return false
	}
	for _, o := range left {
		if len(o.parked) > 0 || !slices.Equal(o.retry, left[0].retry) {
			return false
		}
	}
	return true
}

// logFailures logs, per subscriber, the first failure of p's events.
func (r *Relay) logFailures(p *pending, delay time.Duration) {
	for i, sub := range p.subscribers {
		failed := 0
		var first error
		for e := range p.errs {
			if p.errs[e] != nil && p.errs[e][i] != nil {
				failed++
				first = cmp.Or(first, p.errs[e][i])
			}
		}
		switch {
		case first == nil:
		case errors.As(first, new(permanent)):
			r.opts.Logger.Error("outbox event refused for good", "subscriber", sub, "row", p.id, "events", failed, "error", first)
		default:
			r.opts.Logger.Warn("outbox delivery failed", "subscriber", sub, "row", p.id, "events", failed,
				"attempt", p.attempts+1, "retry_in", delay, "error", first)
		}
	}
}

// backoff is exponential from 1s with full jitter, capped at MaxBackoff.
func (r *Relay) backoff(attempt int) time.Duration {
	d := time.Second << min(attempt-1, 20)
	if d > r.opts.MaxBackoff || d <= 0 {
		d = r.opts.MaxBackoff
	}
	return d/2 + rand.N(d/2+1)
}

func truncate(s string) string { return postgres.Text(s, 2000) }
