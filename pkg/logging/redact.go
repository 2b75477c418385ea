package logging

import (
	"context"
	"log/slog"
	"regexp"
	"strings"

	"google.golang.org/protobuf/proto"
)

// Redacted replaces the value of an attribute that holds personal data.
const Redacted = "[REDACTED]"

// Keys are compared after lowercasing and dropping '_', '-' and '.', so
// "first_name", "firstName" and "First-Name" are the same key.
//
// "name" is deliberately absent: across the APIs it is the resource name
// ("leads/123"), which is what logs should use to refer to a lead. "title",
// "company" and "country" are business attributes, not personal data on
// their own.
var (
	// personalKeys are keys redacted on an exact match.
	personalKeys = map[string]bool{
		"email": true, "emailaddress": true,
		"firstname": true, "lastname": true, "fullname": true, "middlename": true,
		"givenname": true, "familyname": true,
		"phone": true, "phonenumber": true, "mobile": true,
		"ip": true, "ipaddress": true, "clientip": true, "remoteip": true,
		"remoteaddr": true, "peeraddr": true, "xforwardedfor": true, "xrealip": true,
		"useragent": true,
		// OpenTelemetry semantic-convention keys that carry a client's
		// address or browser, set by HTTP and gRPC instrumentation.
		"clientaddress": true, "networkpeeraddress": true, "httpclientip": true,
		"netpeerip": true, "netsockpeeraddr": true, "useragentoriginal": true,
		"httpuseragent": true,
		// Credentials are not personal data but must never be logged either.
		"password": true, "secret": true, "token": true, "authorization": true,
		"cookie": true, "setcookie": true,
	}
	// personalSuffixes catch qualified keys such as "contact_email",
	// "owner_phone" or "client_secret".
	personalSuffixes = []string{
		"email", "phone", "phonenumber", "firstname", "lastname", "ipaddress",
		"password", "secret",
	}
)

// IsPersonalKey reports whether an attribute key names personal data or a
// credential.
func IsPersonalKey(key string) bool {
	k := strings.Map(func(r rune) rune {
		switch r {
		case '_', '-', '.':
			return -1
		}
		return r
	}, strings.ToLower(key))
	if personalKeys[k] {
		return true
	}
	for _, s := range personalSuffixes {
		if strings.HasSuffix(k, s) {
			return true
		}
	}
	return false
}

// emailPattern finds e-mail addresses inside free text such as error
// messages, which may quote the input that failed.
var emailPattern = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+`)

// ScrubText replaces e-mail addresses inside free text with "[REDACTED]".
func ScrubText(s string) string {
	if !strings.Contains(s, "@") {
		return s
	}
	return emailPattern.ReplaceAllString(s, Redacted)
}

// Redact wraps h so that personal data does not reach it:
//
//   - attributes whose keys name personal data or credentials (email,
//     first_name, last_name, phone, ip_address, remote_addr, user_agent,
//     password, token and similar; see IsPersonalKey) get the value
//     "[REDACTED]", at any group depth;
//   - e-mail addresses inside the message, string values and error values
//     are replaced with "[REDACTED]";
//   - protobuf messages, which may hold lead fields, are logged as their
//     type name only.
func Redact(h slog.Handler) slog.Handler {
	if r, ok := h.(*redactHandler); ok {
		return r
	}
	return &redactHandler{next: h}
}

type redactHandler struct{ next slog.Handler }

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *redactHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, ScrubText(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	red := make([]slog.Attr, len(as))
	for i, a := range as {
		red[i] = redactAttr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(red)}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	if IsPersonalKey(a.Key) {
		return slog.String(a.Key, Redacted)
	}
	// Resolve LogValuers first: they may expand into a group with
	// personal keys inside.
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindGroup:
		group := v.Group()
		red := make([]slog.Attr, len(group))
		for i, ga := range group {
			red[i] = redactAttr(ga)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(red...)}
	case slog.KindString:
		return slog.String(a.Key, ScrubText(v.String()))
	case slog.KindAny:
		switch x := v.Any().(type) {
		case proto.Message:
			return slog.String(a.Key, "<"+string(x.ProtoReflect().Descriptor().FullName())+">")
		case error:
			if msg, ok := errorText(x); ok && strings.Contains(msg, "@") {
				return slog.String(a.Key, ScrubText(msg))
			}
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

// errorText returns err.Error(), or false if it panics, as a nil pointer
// receiver may; the wrapped handler then prints the value its own way.
func errorText(err error) (msg string, ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return err.Error(), true
}
