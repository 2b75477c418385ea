package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	ingestionv1 "github.com/leadflow/leadflow/gen/go/leadflow/ingestion/v1"
)

// FormOptions configure the public form endpoint.
type FormOptions struct {
	// CallOptions authenticate the gateway's own GetPublicForm calls with
	// the internal token; the endpoint itself needs no API key.
	CallOptions []grpc.CallOption
	// MaxBodyBytes bounds a submission (default 64 KiB); more gets 413.
	MaxBodyBytes int64
	// PerIP and PerForm are sustained submission rates with their bursts;
	// more gets 429 with Retry-After.
	PerIP, PerForm           rate.Limit
	PerIPBurst, PerFormBurst int
	// PolicyTTL is how long a form's public policy is cached (default 30s).
	PolicyTTL time.Duration
}

var submitPath = regexp.MustCompile(`^/v1/forms/([a-z0-9][a-z0-9-]{0,62}):submit$`)

// formHandler serves POST (and CORS preflight) /v1/forms/{form}:submit. It
// runs in front of grpc-gateway because a public endpoint needs what
// authenticated ones do not: CORS per form, a honeypot, rate limits, body
// limits, and answers that never reveal whether a person is known.
type formHandler struct {
	opts      FormOptions
	ingestion ingestionv1.IngestionServiceClient
	log       *slog.Logger
	perIP     *limiters
	perForm   *limiters

	mu       sync.Mutex
	policies map[string]cachedPolicy
	now      func() time.Time
}

type cachedPolicy struct {
	policy  *ingestionv1.GetPublicFormResponse
	err     error
	expires time.Time
}

func newFormHandler(ingestion ingestionv1.IngestionServiceClient, opts FormOptions, log *slog.Logger) *formHandler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 64 << 10
	}
	if opts.PerIP == 0 {
		opts.PerIP, opts.PerIPBurst = rate.Every(6*time.Second), 5 // 10 a minute
	}
	if opts.PerForm == 0 {
		opts.PerForm, opts.PerFormBurst = rate.Limit(20), 100
	}
	if opts.PolicyTTL <= 0 {
		opts.PolicyTTL = 30 * time.Second
	}
	return &formHandler{
		opts: opts, ingestion: ingestion, log: log,
		perIP:    newLimiters(opts.PerIP, opts.PerIPBurst),
		perForm:  newLimiters(opts.PerForm, opts.PerFormBurst),
		policies: map[string]cachedPolicy{},
		now:      time.Now,
	}
}

// match reports whether r is for the form endpoint, and which form.
func (h *formHandler) match(r *http.Request) (string, bool) {
	m := submitPath.FindStringSubmatch(r.URL.Path)
	if m == nil || (r.Method != http.MethodPost && r.Method != http.MethodOptions) {
		return "", false
	}
	return m[1], true
}

func (h *formHandler) serve(w http.ResponseWriter, r *http.Request, form string) {
	ctx := r.Context()
	policy, err := h.policy(ctx, form)
	if err != nil {
		writeGRPCError(w, err)
		return
	}
	origin := r.Header.Get("Origin")
	if origin != "" {
		if !slices.Contains(policy.GetAllowedOrigins(), origin) {
			writeError(w, http.StatusForbidden, codes.PermissionDenied, "origin not allowed for this form")
			return
		}
		w.Header().Set("Access-Control-Allow-Origin", origin)
		w.Header().Add("Vary", "Origin")
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.Header().Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusNoContent)
		return
	}

	now := h.now()
	if wait := h.perIP.take(clientIP(r), now); wait > 0 {
		tooMany(w, wait)
		return
	}
	if wait := h.perForm.take(form, now); wait > 0 {
		tooMany(w, wait)
		return
	}

	fields, htmlForm, err := h.readFields(w, r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
				fmt.Sprintf("submission larger than %d bytes", h.opts.MaxBodyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		return
	}

	// A filled honeypot is a bot: answer exactly as for a person, store nothing.
	if hp := policy.GetHoneypotField(); hp != "" && fields[hp] != "" {
		h.succeed(w, r, htmlForm, policy.GetThankYouUrl())
		return
	}
	delete(fields, policy.GetHoneypotField())

	md := metadata.Pairs("x-forwarded-for", clientIP(r))
	if ua := r.Header.Get("User-Agent"); ua != "" {
		md.Set("user-agent", ua)
	}
	resp, err := h.ingestion.SubmitForm(metadata.NewOutgoingContext(ctx, md),
		&ingestionv1.SubmitFormRequest{Name: "forms/" + form, Fields: fields})
	if err != nil {
		writeGRPCError(w, err)
		return
	}
	h.succeed(w, r, htmlForm, resp.GetThankYouUrl())
}

// readFields accepts a JSON body {"fields": {...}} or a plain HTML form post.
func (h *formHandler) readFields(w http.ResponseWriter, r *http.Request) (map[string]string, bool, error) {
	r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxBodyBytes)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded":
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, true, err
		}
		values, err := url.ParseQuery(string(raw))
		if err != nil {
			return nil, true, errors.New("malformed form body")
		}
		fields := make(map[string]string, len(values))
		for k, v := range values {
			if !utf8.ValidString(k) || !utf8.ValidString(v[0]) {
				return nil, true, errors.New("form fields must be UTF-8 text (accept-charset=\"utf-8\" on the form)")
			}
			fields[k] = v[0]
		}
		return fields, true, nil
	case "application/json", "":
		var body struct {
			Fields map[string]string `json:"fields"`
		}
		raw, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, false, err
		}
		// encoding/json would quietly replace bytes that are not UTF-8.
		if !utf8.Valid(raw) {
			return nil, false, errors.New("body must be UTF-8 text")
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			return nil, false, errors.New(`body must be JSON like {"fields": {"email": "..."}}`)
		}
		if body.Fields == nil {
			body.Fields = map[string]string{}
		}
		return body.Fields, false, nil
	default:
		return nil, false, fmt.Errorf("unsupported content type %q: use application/json or application/x-www-form-urlencoded", ct)
	}
}

// succeed answers a stored (or silently dropped) submission: a plain HTML
// form is redirected to the thank-you page, a script gets JSON.
func (h *formHandler) succeed(w http.ResponseWriter, r *http.Request, htmlForm bool, thankYou string) {
	if htmlForm && thankYou != "" {
		http.Redirect(w, r, thankYou, http.StatusSeeOther)
		return
	}
	if htmlForm {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, "<!doctype html><title>Thank you</title><p>Thank you, we received your request.</p>\n")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"thankYouUrl": thankYou})
}

// policy returns the form's public policy, cached for PolicyTTL. A missing
// form is cached too, so a flood of posts to a bogus id costs one lookup.
func (h *formHandler) policy(ctx context.Context, form string) (*ingestionv1.GetPublicFormResponse, error) {
	now := h.now()
	h.mu.Lock()
	c, ok := h.policies[form]
	h.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.policy, c.err
	}
	p, err := h.ingestion.GetPublicForm(ctx, &ingestionv1.GetPublicFormRequest{Name: "forms/" + form}, h.opts.CallOptions...)
	if err != nil && status.Code(err) != codes.NotFound {
		return nil, err
	}
	h.mu.Lock()
	if len(h.policies) > 10000 {
		clear(h.policies)
	}
	h.policies[form] = cachedPolicy{policy: p, err: err, expires: now.Add(h.opts.PolicyTTL)}
	h.mu.Unlock()
	return p, err
}

func tooMany(w http.ResponseWriter, wait time.Duration) {
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
	writeError(w, http.StatusTooManyRequests, codes.ResourceExhausted, "too many submissions, retry later")
}

// limiters holds one token bucket per key (client IP or form), forgetting
// keys idle for longer than it takes their bucket to refill.
type limiters struct {
	limit rate.Limit
	burst int
	mu    sync.Mutex
	m     map[string]*limiterEntry
}

type limiterEntry struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiters(limit rate.Limit, burst int) *limiters {
	return &limiters{limit: limit, burst: burst, m: map[string]*limiterEntry{}}
}

// take spends a token for key and returns 0, or how long until one is free.
func (l *limiters) take(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) > 100000 {
		for k, e := range l.m {
			if now.Sub(e.seen) > 10*time.Minute {
				delete(l.m, k)
			}
		}
	}
	e, ok := l.m[key]
	if !ok {
		e = &limiterEntry{lim: rate.NewLimiter(l.limit, l.burst)}
		l.m[key] = e
	}
	e.seen = now
	res := e.lim.ReserveN(now, 1)
	if !res.OK() {
		return time.Minute
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d
	}
	return 0
}
