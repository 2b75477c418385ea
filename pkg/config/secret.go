package config

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
)

// Masked replaces a secret value in logs.
const Masked = "[REDACTED]"

// Secret is a string that must never be logged, such as an API key pepper.
// fmt, encoding/json and log/slog all print it as Masked (or "" when empty);
// Reveal returns the value.
type Secret string

// Reveal returns the secret value, for the one place that uses it.
func (s Secret) Reveal() string { return string(s) }

// String masks the secret.
func (s Secret) String() string { return mask(string(s)) }

// GoString masks the secret in %#v.
func (s Secret) GoString() string { return fmt.Sprintf("config.Secret(%q)", s.String()) }

// LogValue masks the secret.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON masks the secret.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// SecretURL is a URL carrying credentials, such as DATABASE_URL. It prints
// with its password and query values masked, so logs still show which
// server and database a service uses. A value that is not a URL (a
// keyword/value connection string, say) prints fully masked.
type SecretURL string

// Reveal returns the URL with its credentials.
func (u SecretURL) Reveal() string { return string(u) }

// String returns the URL with its password and query values masked.
func (u SecretURL) String() string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(string(u))
	if err != nil || p.Scheme == "" || p.Host == "" || p.Opaque != "" {
		return Masked
	}
	if p.User != nil {
		if _, ok := p.User.Password(); ok {
			p.User = url.UserPassword(p.User.Username(), "xxxxx")
		}
	}
	// Query parameters may hold passwords (password=, sslpassword=) or
	// tokens; keep the names, which help debugging, and mask the values.
	if p.RawQuery != "" {
		q := p.Query()
		for k := range q {
			q[k] = []string{"xxxxx"}
		}
		p.RawQuery = q.Encode()
	}
	p.Fragment, p.RawFragment = "", ""
	return p.String()
}

// GoString masks the URL in %#v.
func (u SecretURL) GoString() string { return fmt.Sprintf("config.SecretURL(%q)", u.String()) }

// LogValue returns the masked URL.
func (u SecretURL) LogValue() slog.Value { return slog.StringValue(u.String()) }

// MarshalJSON returns the masked URL.
func (u SecretURL) MarshalJSON() ([]byte, error) { return json.Marshal(u.String()) }

func mask(s string) string {
	if s == "" {
		return ""
	}
	return Masked
}

// LogValue returns cfg, a struct or pointer to one loaded by Load, as a
// log group keyed by variable name (without the service prefix), e.g.
// {"GRPC_ADDR":":9090","DATABASE_URL":"postgres://app:xxxxx@db:5432/leadflow"}.
// Fields tagged `secret:"true"` are masked, as are Secret and SecretURL
// values; fields without an `env` tag are left out unless they are nested
// config structs.
func LogValue(cfg any) slog.Value {
	v := reflect.ValueOf(cfg)
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return slog.StringValue("<nil>")
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return slog.StringValue(Masked)
	}
	return slog.GroupValue(structAttrs(v, "")...)
}

var (
	logValuerType = reflect.TypeFor[slog.LogValuer]()
	stringerType  = reflect.TypeFor[fmt.Stringer]()
)

func structAttrs(v reflect.Value, prefix string) []slog.Attr {
	var attrs []slog.Attr
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			// Nested config structs (embedded Base, or fields with an
			// envPrefix) contribute their own variables.
			for fv.Kind() == reflect.Pointer && !fv.IsNil() {
				fv = fv.Elem()
			}
			if fv.Kind() == reflect.Struct {
				attrs = append(attrs, structAttrs(fv, prefix+f.Tag.Get("envPrefix"))...)
			}
			continue
		}
		attrs = append(attrs, slog.Attr{Key: prefix + name, Value: fieldValue(f, fv)})
	}
	return attrs
}

func fieldValue(f reflect.StructField, v reflect.Value) slog.Value {
	switch {
	case f.Tag.Get("secret") == "true":
		if v.IsZero() {
			return slog.StringValue("")
		}
		return slog.StringValue(Masked)
	case v.Kind() == reflect.Pointer && v.IsNil():
		return slog.AnyValue(nil)
	case v.Type().Implements(logValuerType):
		return v.Interface().(slog.LogValuer).LogValue()
	case v.Type().Implements(stringerType):
		// time.Duration, slog.Level and the like read better as text.
		return slog.StringValue(v.Interface().(fmt.Stringer).String())
	default:
		return slog.AnyValue(v.Interface())
	}
}
