package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/services/lifecycle/internal/lifecycle"
)

type reasonJSON struct {
	Code        string `json:"code"`
	DisplayName string `json:"display_name,omitempty"`
}

func encodeReasons(rs []lifecycle.ReasonCode) ([]byte, error) {
	out := make([]reasonJSON, len(rs))
	for i, r := range rs {
		out[i] = reasonJSON{Code: r.Code, DisplayName: r.DisplayName}
	}
	return json.Marshal(out)
}

func decodeReasons(raw []byte) ([]lifecycle.ReasonCode, error) {
	var in []reasonJSON
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, err
	}
	out := make([]lifecycle.ReasonCode, len(in))
	for i, r := range in {
		out[i] = lifecycle.ReasonCode{Code: r.Code, DisplayName: r.DisplayName}
	}
	return out, nil
}

// encodeAllowed stores the graph by stage name, so the column reads well.
func encodeAllowed(g map[lifecycle.Stage][]lifecycle.Stage) ([]byte, error) {
	out := make(map[string][]string, len(g))
	for from, tos := range g {
		names := make([]string, len(tos))
		for i, to := range tos {
			names[i] = to.String()
		}
		out[from.String()] = names
	}
	return json.Marshal(out)
}

func decodeAllowed(raw []byte) (map[lifecycle.Stage][]lifecycle.Stage, error) {
	var in map[string][]string
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, err
	}
	out := make(map[lifecycle.Stage][]lifecycle.Stage, len(in))
	for from, tos := range in {
		f, ok := lifecycle.ParseStage(from)
		if !ok {
			return nil, fmt.Errorf("unknown stage %q in settings", from)
		}
		for _, to := range tos {
			t, ok := lifecycle.ParseStage(to)
			if !ok {
				return nil, fmt.Errorf("unknown stage %q in settings", to)
			}
			out[f] = append(out[f], t)
		}
	}
	return out, nil
}

// readSettings returns the stored settings or the defaults; forUpdate locks
// the row.
func readSettings(ctx context.Context, q querier, workspace string, forUpdate bool) (lifecycle.Settings, error) {
	sql := `SELECT allowed, lost_reasons, disqualified_reasons, version, update_time FROM settings WHERE workspace_id = $1`
	if forUpdate {
		sql += ` FOR UPDATE`
	}
	var allowed, lost, disq []byte
	var s lifecycle.Settings
	err := q.QueryRow(ctx, sql, workspace).Scan(&allowed, &lost, &disq, &s.Version, &s.UpdateTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return lifecycle.DefaultSettings(), nil
	}
	if err != nil {
		return lifecycle.Settings{}, fmt.Errorf("read settings: %w", err)
	}
	return decodeSettings(allowed, lost, disq, s.Version, s.UpdateTime)
}

// decodeSettings builds settings from their stored columns.
func decodeSettings(allowed, lost, disq []byte, version int64, updateTime time.Time) (lifecycle.Settings, error) {
	s := lifecycle.Settings{Version: version, UpdateTime: updateTime}
	var err error
	if s.Allowed, err = decodeAllowed(allowed); err != nil {
		return lifecycle.Settings{}, fmt.Errorf("decode allowed transitions: %w", err)
	}
	if s.LostReasons, err = decodeReasons(lost); err != nil {
		return lifecycle.Settings{}, fmt.Errorf("decode lost reasons: %w", err)
	}
	if s.DisqualifiedReasons, err = decodeReasons(disq); err != nil {
		return lifecycle.Settings{}, fmt.Errorf("decode disqualified reasons: %w", err)
	}
	return s, nil
}

// Settings implements lifecycle.Store.
func (s *Store) Settings(ctx context.Context, workspace string) (lifecycle.Settings, error) {
	return readSettings(ctx, s.q(), workspace, false)
}

// UpdateSettings implements lifecycle.Store. The first write of a workspace
// races only with another first write; the loser gets ErrStaleSettings.
func (s *Store) UpdateSettings(ctx context.Context, workspace string, fn func(lifecycle.Settings) (lifecycle.Settings, error)) (lifecycle.Settings, error) {
	var out lifecycle.Settings
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		cur, err := readSettings(ctx, tx, workspace, true)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		allowed, err := encodeAllowed(next.Allowed)
		if err != nil {
			return err
		}
		lost, err := encodeReasons(next.LostReasons)
		if err != nil {
			return err
		}
		disq, err := encodeReasons(next.DisqualifiedReasons)
		if err != nil {
			return err
		}
		const q = `
INSERT INTO settings (workspace_id, allowed, lost_reasons, disqualified_reasons, version, update_time)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (workspace_id) DO UPDATE
   SET allowed = EXCLUDED.allowed, lost_reasons = EXCLUDED.lost_reasons,
       disqualified_reasons = EXCLUDED.disqualified_reasons, version = EXCLUDED.version,
       update_time = EXCLUDED.update_time
 WHERE settings.version = $7`
		tag, err := tx.Exec(ctx, q, workspace, allowed, lost, disq, next.Version, next.UpdateTime.UTC(), cur.Version)
		if err != nil {
			return fmt.Errorf("write settings: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return lifecycle.ErrStaleSettings
		}
		out = next
		out.UpdateTime = next.UpdateTime.UTC().Truncate(time.Microsecond)
		return nil
	})
	return out, err
}
