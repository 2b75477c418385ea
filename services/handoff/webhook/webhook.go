// Package webhook signs Leadflow handoff webhooks and lets receivers verify
// them. A receiver written in Go calls Verify with its subscription's secret
// before trusting a request:
//
//	body, _ := io.ReadAll(r.Body)
//	if err := webhook.Verify(secret, r.Header, body, time.Now()); err != nil {
//		http.Error(w, "bad signature", http.StatusUnauthorized)
//		return
//	}
//	// Deduplicate on r.Header.Get(webhook.HeaderID), then handle body.
//
// The scheme, for receivers in other languages: the signature header holds
// one or more comma-separated "v1=" + lowercase hex of
// HMAC-SHA256(secret, timestamp + "." + body), where timestamp is the
// decimal Unix seconds of the timestamp header. Accept the request when any
// entry matches (compared in constant time) and the timestamp is within 5
// minutes of the receiver's clock.
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The request headers of a delivery.
const (
	// HeaderID is the payload id, the same on every retry: deduplicate on it.
	HeaderID = "Leadflow-Webhook-Id"
	// HeaderTimestamp is the Unix time, in seconds, the attempt was signed.
	HeaderTimestamp = "Leadflow-Webhook-Timestamp"
	// HeaderSignature holds the signatures, "v1=<hex>[,v1=<hex>]".
	HeaderSignature = "Leadflow-Webhook-Signature"
)

// Tolerance is how far a timestamp may be from the receiver's clock; older
// requests are refused as replays.
const Tolerance = 5 * time.Minute

// Errors Verify reports.
var (
	ErrMissingHeaders   = errors.New("webhook: missing timestamp or signature header")
	ErrTimestamp        = errors.New("webhook: timestamp outside the tolerance")
	ErrSignatureInvalid = errors.New("webhook: no signature matches")
)

// Sign returns the "v1=" signature of body signed at ts with secret.
func Sign(secret string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "v1=" + hex.EncodeToString(mac.Sum(nil))
}

// Headers returns the headers of a delivery of body with payload id,
// signed at ts by every secret (the current one first, then one being
// rotated out).
func Headers(id string, ts time.Time, body []byte, secrets ...string) http.Header {
	sigs := make([]string, 0, len(secrets))
	for _, s := range secrets {
		sigs = append(sigs, Sign(s, ts, body))
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, strings.Join(sigs, ","))
	return h
}

// Verify checks that body was signed with secret at a time within
// Tolerance of now, according to header.
func Verify(secret string, header http.Header, body []byte, now time.Time) error {
	rawTS, sigs := header.Get(HeaderTimestamp), header.Get(HeaderSignature)
	if rawTS == "" || sigs == "" {
		return ErrMissingHeaders
	}
	sec, err := strconv.ParseInt(rawTS, 10, 64)
	if err != nil {
		return ErrTimestamp
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > Tolerance || d < -Tolerance {
		return ErrTimestamp
	}
	want := []byte(Sign(secret, ts, body))
	for _, sig := range strings.Split(sigs, ",") {
		if hmac.Equal([]byte(strings.TrimSpace(sig)), want) {
			return nil
		}
	}
	return ErrSignatureInvalid
}
