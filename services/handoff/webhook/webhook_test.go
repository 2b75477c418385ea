package webhook_test

import (
	"errors"
	"testing"
	"time"

	"github.com/leadflow/leadflow/services/handoff/webhook"
)

func TestVerify(t *testing.T) {
	signed := time.Unix(1_800_000_000, 0)
	body := []byte(`{"id":"e1","eventType":"WEBHOOK_EVENT_TYPE_HANDOFF_ASSIGNED"}`)
	h := webhook.Headers("e1", signed, body, "new-secret", "old-secret")
	for _, tc := range []struct {
		name   string
		secret string
		body   []byte
		now    time.Time
		want   error
	}{
		{"current secret", "new-secret", body, signed.Add(time.Minute), nil},
		{"secret being rotated out", "old-secret", body, signed, nil},
		{"wrong secret", "guess", body, signed, webhook.ErrSignatureInvalid},
		{"tampered body", "new-secret", append([]byte(nil), append(body, ' ')...), signed, webhook.ErrSignatureInvalid},
		{"replayed later", "new-secret", body, signed.Add(webhook.Tolerance + time.Second), webhook.ErrTimestamp},
		{"from the future", "new-secret", body, signed.Add(-webhook.Tolerance - time.Second), webhook.ErrTimestamp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := webhook.Verify(tc.secret, h, tc.body, tc.now); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("missing headers", func(t *testing.T) {
		if err := webhook.Verify("s", nil, body, signed); !errors.Is(err, webhook.ErrMissingHeaders) {
			t.Fatalf("Verify = %v", err)
		}
	})
	t.Run("known vector", func(t *testing.T) {
		// printf '1800000000.{}' | openssl dgst -sha256 -hmac secret
		const want = "v1=bb7079132825ac793cea8c013c1dd24d926b9b02132245b10588d9e5c0df70d7"
		if got := webhook.Sign("secret", signed, []byte("{}")); got != want {
			t.Fatalf("Sign = %q, want %q", got, want)
		}
	})
}
