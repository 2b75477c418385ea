package store

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/postgres"
	"github.com/leadflow/leadflow/services/handoff/internal/handoff"
)

const subscriptionCols = `
workspace_id, id, display_name, url, event_types, max_attempts, disabled, secret, previous_secret,
previous_expire_time, create_time, update_time, version`

type subscriptionRow struct {
	WorkspaceID        string     `db:"workspace_id"`
	ID                 string     `db:"id"`
	DisplayName        string     `db:"display_name"`
	URL                string     `db:"url"`
	EventTypes         []int16    `db:"event_types"`
	MaxAttempts        int        `db:"max_attempts"`
	Disabled           bool       `db:"disabled"`
	Secret             string     `db:"secret"`
	PreviousSecret     string     `db:"previous_secret"`
	PreviousExpireTime *time.Time `db:"previous_expire_time"`
	CreateTime         time.Time  `db:"create_time"`
	UpdateTime         time.Time  `db:"update_time"`
	Version            int64      `db:"version"`
}

func (r subscriptionRow) toDomain() handoff.Subscription {
	s := handoff.Subscription{
		Workspace: r.WorkspaceID, ID: r.ID, DisplayName: r.DisplayName, URL: r.URL,
		MaxAttempts: r.MaxAttempts, Disabled: r.Disabled, Secret: r.Secret,
		PreviousSecret: r.PreviousSecret, PreviousExpire: r.PreviousExpireTime,
		CreateTime: r.CreateTime, UpdateTime: r.UpdateTime, Version: r.Version,
	}
	for _, t := range r.EventTypes {
		s.EventTypes = append(s.EventTypes, handoff.EventType(t))
	}
	return s
}

func eventTypes(ts []handoff.EventType) []int16 {
	out := make([]int16, 0, len(ts))
	for _, t := range ts {
		out = append(out, int16(t))
	}
	return out
}

func (s *Store) querySubscriptions(ctx context.Context, q string, args ...any) ([]handoff.Subscription, error) {
	rows, err := s.q().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	subs, err := pgx.CollectRows(rows, pgx.RowToStructByName[subscriptionRow])
	if err != nil {
		return nil, err
	}
	out := make([]handoff.Subscription, len(subs))
	for i, r := range subs {
		out[i] = r.toDomain()
	}
	return out, nil
}

// CreateSubscription implements handoff.WebhookStore.
func (s *Store) CreateSubscription(ctx context.Context, sub handoff.Subscription, requestID string) (handoff.Subscription, error) {
	if requestID != "" {
		subs, err := s.querySubscriptions(ctx, `SELECT `+subscriptionCols+` FROM webhook_subscriptions
 WHERE workspace_id = $1 AND request_id = $2`, sub.Workspace, requestID)
		if err != nil {
			return handoff.Subscription{}, err
		}
		if len(subs) > 0 {
			return subs[0], nil
		}
	}
	const q = `
INSERT INTO webhook_subscriptions (workspace_id, id, display_name, url, event_types, max_attempts, disabled,
                                   secret, request_id, create_time, update_time, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, 1)`
	_, err := s.q().Exec(ctx, q, sub.Workspace, sub.ID, sub.DisplayName, sub.URL, eventTypes(sub.EventTypes),
		sub.MaxAttempts, sub.Disabled, sub.Secret, requestID, sub.CreateTime)
	if postgres.IsUniqueViolation(err) {
		return handoff.Subscription{}, handoff.ErrSubscriptionExists
	}
	return sub, err
}

// GetSubscription implements handoff.WebhookStore.
func (s *Store) GetSubscription(ctx context.Context, workspace, id string) (handoff.Subscription, error) {
	subs, err := s.querySubscriptions(ctx, `SELECT `+subscriptionCols+` FROM webhook_subscriptions
 WHERE workspace_id = $1 AND id = $2`, workspace, id)
	if err != nil {
		return handoff.Subscription{}, err
	}
	if len(subs) == 0 {
		return handoff.Subscription{}, handoff.ErrSubscriptionNotFound
	}
	return subs[0], nil
}

// ListSubscriptions implements handoff.WebhookStore.
func (s *Store) ListSubscriptions(ctx context.Context, workspace string, after *handoff.NameCursor, limit int) ([]handoff.Subscription, error) {
	var afterID string
	if after != nil {
		afterID = after.ID
	}
	return s.querySubscriptions(ctx, `SELECT `+subscriptionCols+` FROM webhook_subscriptions
 WHERE workspace_id = $1 AND id > $2 ORDER BY id LIMIT $3`, workspace, afterID, limit)
}

// UpdateSubscription implements handoff.WebhookStore.
func (s *Store) UpdateSubscription(ctx context.Context, sub handoff.Subscription, at time.Time) (handoff.Subscription, error) {
	const q = `
UPDATE webhook_subscriptions
   SET display_name = $4, url = $5, event_types = $6, max_attempts = $7, disabled = $8, secret = $9,
       previous_secret = $10, previous_expire_time = $11, update_time = $12, version = version + 1
 WHERE workspace_id = $1 AND id = $2 AND version = $3`
	tag, err := s.q().Exec(ctx, q, sub.Workspace, sub.ID, sub.Version, sub.DisplayName, sub.URL,
		eventTypes(sub.EventTypes), sub.MaxAttempts, sub.Disabled, sub.Secret, sub.PreviousSecret,
		sub.PreviousExpire, at)
	if err != nil {
		return handoff.Subscription{}, err
	}
	if tag.RowsAffected() == 0 {
		return handoff.Subscription{}, handoff.ErrStaleEtag
	}
	sub.Version++
	sub.UpdateTime = at
	return sub, nil
}

// DeleteSubscription implements handoff.WebhookStore; deliveries cascade.
func (s *Store) DeleteSubscription(ctx context.Context, workspace, id string, version int64) error {
	const q = `DELETE FROM webhook_subscriptions WHERE workspace_id = $1 AND id = $2 AND version = $3`
	tag, err := s.q().Exec(ctx, q, workspace, id, version)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return handoff.ErrStaleEtag
	}
	return nil
}

const deliveryCols = `
d.workspace_id, d.subscription_id, d.id, d.event_id, d.event_type, d.handoff_id, d.payload, d.state,
d.attempt_count, d.budget_used, d.attempts, d.next_attempt_time, d.redrive_count, d.create_time,
d.complete_time`

type deliveryRow struct {
	WorkspaceID     string            `db:"workspace_id"`
	SubscriptionID  string            `db:"subscription_id"`
	ID              string            `db:"id"`
	EventID         string            `db:"event_id"`
	EventType       int               `db:"event_type"`
	HandoffID       string            `db:"handoff_id"`
	Payload         []byte            `db:"payload"`
	State           int               `db:"state"`
	AttemptCount    int               `db:"attempt_count"`
	BudgetUsed      int               `db:"budget_used"`
	Attempts        []handoff.Attempt `db:"attempts"`
	NextAttemptTime *time.Time        `db:"next_attempt_time"`
	RedriveCount    int               `db:"redrive_count"`
	CreateTime      time.Time         `db:"create_time"`
	CompleteTime    *time.Time        `db:"complete_time"`
}

func (r deliveryRow) toDomain() handoff.Delivery {
	return handoff.Delivery{
		Workspace: r.WorkspaceID, Subscription: r.SubscriptionID, ID: r.ID, EventID: r.EventID,
		EventType: handoff.EventType(r.EventType), Handoff: r.HandoffID, Payload: r.Payload,
		State: handoff.DeliveryState(r.State), AttemptCount: r.AttemptCount, BudgetUsed: r.BudgetUsed,
		Attempts: r.Attempts, NextAttemptTime: r.NextAttemptTime, RedriveCount: r.RedriveCount,
		CreateTime: r.CreateTime, CompleteTime: r.CompleteTime,
	}
}

func (s *Store) queryDeliveries(ctx context.Context, q string, args ...any) ([]handoff.Delivery, error) {
	rows, err := s.q().Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	ds, err := pgx.CollectRows(rows, pgx.RowToStructByName[deliveryRow])
	if err != nil {
		return nil, err
	}
	out := make([]handoff.Delivery, len(ds))
	for i, r := range ds {
		out[i] = r.toDomain()
	}
	return out, nil
}

// ListDeliveries implements handoff.WebhookStore.
func (s *Store) ListDeliveries(ctx context.Context, workspace string, f handoff.DeliveryFilter, after *handoff.TimeCursor, limit int) ([]handoff.Delivery, error) {
	q := `SELECT ` + deliveryCols + ` FROM webhook_deliveries d
 WHERE d.workspace_id = $1
   AND ($2 = '' OR d.subscription_id = $2)
   AND ($3 = 0 OR d.state = $3)
   AND ($4 = '' OR d.handoff_id = $4)
   AND ($5::timestamptz IS NULL OR (d.create_time, d.id) < ($5, $6))
 ORDER BY d.create_time DESC, d.id DESC
 LIMIT $7`
	var afterTime *time.Time
	var afterID string
	if after != nil {
		afterTime, afterID = &after.Time, after.ID
	}
	return s.queryDeliveries(ctx, q, workspace, f.Subscription, int(f.State), f.Handoff, afterTime, afterID, limit)
}

// GetDelivery implements handoff.WebhookStore.
func (s *Store) GetDelivery(ctx context.Context, workspace, subscription, id string, forUpdate bool) (handoff.Delivery, error) {
	ds, err := s.queryDeliveries(ctx, `SELECT `+deliveryCols+` FROM webhook_deliveries d
 WHERE d.workspace_id = $1 AND d.subscription_id = $2 AND d.id = $3`+lockClause(forUpdate), workspace, subscription, id)
	if err != nil {
		return handoff.Delivery{}, err
	}
	if len(ds) == 0 {
		return handoff.Delivery{}, handoff.ErrDeliveryNotFound
	}
	return ds[0], nil
}

// UpdateDelivery implements handoff.WebhookStore.
func (s *Store) UpdateDelivery(ctx context.Context, d handoff.Delivery, expectAttempts int) (bool, error) {
	const q = `
UPDATE webhook_deliveries
   SET state = $5, attempt_count = $6, budget_used = $7, attempts = $8, next_attempt_time = $9,
       redrive_count = $10, complete_time = $11
 WHERE workspace_id = $1 AND subscription_id = $2 AND id = $3 AND attempt_count = $4`
	attempts := d.Attempts
	if attempts == nil {
		attempts = []handoff.Attempt{}
	}
	tag, err := s.q().Exec(ctx, q, d.Workspace, d.Subscription, d.ID, expectAttempts, int(d.State), d.AttemptCount,
		d.BudgetUsed, jsonb(attempts), d.NextAttemptTime, d.RedriveCount, d.CompleteTime)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// ClaimDeliveries implements handoff.WebhookStore.
func (s *Store) ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]handoff.Claim, error) {
	var claims []handoff.Claim
	err := postgres.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		const q = `
SELECT ` + deliveryCols + `, sub.url, sub.max_attempts, sub.secret, sub.previous_secret, sub.previous_expire_time
  FROM webhook_deliveries d
  JOIN webhook_subscriptions sub ON sub.workspace_id = d.workspace_id AND sub.id = d.subscription_id
 WHERE d.state = 1 AND d.next_attempt_time <= $1 AND NOT sub.disabled
 ORDER BY d.next_attempt_time
 LIMIT $2
   FOR UPDATE OF d SKIP LOCKED`
		rows, err := tx.Query(ctx, q, now, limit)
		if err != nil {
			return err
		}
		type claimRow struct {
			deliveryRow
			URL                string     `db:"url"`
			MaxAttempts        int        `db:"max_attempts"`
			Secret             string     `db:"secret"`
			PreviousSecret     string     `db:"previous_secret"`
			PreviousExpireTime *time.Time `db:"previous_expire_time"`
		}
		crs, err := pgx.CollectRows(rows, pgx.RowToStructByName[claimRow])
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		for _, r := range crs {
			sub := handoff.Subscription{Secret: r.Secret, PreviousSecret: r.PreviousSecret, PreviousExpire: r.PreviousExpireTime}
			claims = append(claims, handoff.Claim{
				Delivery: r.deliveryRow.toDomain(), URL: r.URL, MaxAttempts: r.MaxAttempts,
				Secrets: sub.Secrets(now), ClaimedCount: r.AttemptCount,
			})
			// The lease: another worker retries only if this one never records.
			b.Queue(`UPDATE webhook_deliveries SET next_attempt_time = $4
 WHERE workspace_id = $1 AND subscription_id = $2 AND id = $3`,
				r.WorkspaceID, r.SubscriptionID, r.ID, now.Add(lease))
		}
		if b.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, b).Close()
	})
	return claims, err
}
