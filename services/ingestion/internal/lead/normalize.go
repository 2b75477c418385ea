package lead

import (
	_ "embed"
	"fmt"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/biter777/countries"
	"github.com/nyaruka/phonenumbers"
	"golang.org/x/text/unicode/norm"

	"github.com/leadflow/leadflow/pkg/apperr"
)

// Field length limits, in characters. They match the proto's validation
// rules, which guard the gRPC door; Normalize guards every other way in
// (forms, CSV) and runs after trimming.
const (
	MaxEmailLen     = 254
	MaxNameLen      = 200
	MaxTextLen      = 200
	MaxCustomKeyLen = 100
	MaxCustomValLen = 2000
	MaxCustomFields = 100
	// MaxEmployeeCount bounds employee_count.
	MaxEmployeeCount = 10_000_000
)

//go:embed freemail.txt
var freemailList string

// freemail holds consumer mailbox domains: their users are people, not
// companies, so such leads get no company domain or account.
var freemail = func() map[string]bool {
	m := map[string]bool{}
	for _, line := range strings.Split(freemailList, "\n") {
		if d := strings.TrimSpace(line); d != "" && !strings.HasPrefix(d, "#") {
			m[d] = true
		}
	}
	return m
}()

// IsFreemail reports whether domain is a free consumer mailbox provider.
func IsFreemail(domain string) bool { return freemail[domain] }

// clean trims and NFC-normalises s.
func clean(s string) string { return norm.NFC.String(strings.TrimSpace(s)) }

// noNUL is the violation of text with a NUL character, which PostgreSQL
// cannot store.
const noNUL = "must not contain NUL characters"

// Normalize cleans every field of l in place and validates it. Violations
// name fields as prefix+field ("lead.email"), all at once.
func Normalize(l *Lead, prefix string) error {
	var v violations
	v.prefix = prefix

	l.Email = strings.ToLower(clean(l.Email))
	switch {
	case l.Email == "":
		v.add("email", "is required")
	case utf8.RuneCountInString(l.Email) > MaxEmailLen:
		v.add("email", fmt.Sprintf("must be at most %d characters", MaxEmailLen))
	case !validEmail(l.Email):
		v.add("email", "must be a valid email address, like name@example.com")
	}

	for _, f := range []struct {
		name string
		val  *string
		max  int
	}{
		{"first_name", &l.FirstName, MaxNameLen},
		{"last_name", &l.LastName, MaxNameLen},
		{"company", &l.Company, MaxTextLen},
		{"title", &l.Title, MaxTextLen},
		{"industry", &l.Industry, MaxTextLen},
		{"source", &l.Source, MaxTextLen},
		{"campaign", &l.Campaign, MaxTextLen},
	} {
		*f.val = clean(*f.val)
		switch {
		case utf8.RuneCountInString(*f.val) > f.max:
			v.add(f.name, fmt.Sprintf("must be at most %d characters", f.max))
		case strings.IndexByte(*f.val, 0) >= 0:
			v.add(f.name, noNUL)
		}
	}

	if l.EmployeeCount < 0 || l.EmployeeCount > MaxEmployeeCount {
		v.add("employee_count", fmt.Sprintf("must be from 0 to %d", MaxEmployeeCount))
	}

	l.Country = clean(l.Country)
	if l.Country != "" {
		code, ok := CountryCode(l.Country)
		if !ok {
			v.add("country", "must be a country name or an ISO 3166 code")
		}
		l.Country = code
	}

	l.Phone = clean(l.Phone)
	if l.Phone != "" {
		e164, ok := E164(l.Phone, l.Country)
		if !ok {
			v.add("phone", "must be a valid phone number, with its country code or a known country")
		}
		l.Phone = e164
	}

	if len(l.Custom) > MaxCustomFields {
		v.add("custom_attributes", fmt.Sprintf("must have at most %d entries", MaxCustomFields))
	}
	var custom map[string]string // most leads have none
	if len(l.Custom) > 0 {
		custom = make(map[string]string, len(l.Custom))
	}
	for k, val := range l.Custom {
		k, val = clean(k), clean(val)
		switch {
		case k == "":
			v.add("custom_attributes", "keys must not be empty")
		case utf8.RuneCountInString(k) > MaxCustomKeyLen:
			v.add("custom_attributes", fmt.Sprintf("keys must be at most %d characters", MaxCustomKeyLen))
		case strings.IndexByte(k, 0) >= 0:
			v.add("custom_attributes", "keys "+noNUL)
		case utf8.RuneCountInString(val) > MaxCustomValLen:
			v.add("custom_attributes["+k+"]", fmt.Sprintf("must be at most %d characters", MaxCustomValLen))
		case strings.IndexByte(val, 0) >= 0:
			v.add("custom_attributes["+k+"]", noNUL)
		default:
			custom[k] = val
		}
	}
	l.Custom = custom

	l.CompanyDomain = ""
	if at := strings.LastIndexByte(l.Email, '@'); at >= 0 && v.ok() {
		if d := l.Email[at+1:]; !IsFreemail(d) {
			l.CompanyDomain = d
		}
	}
	return v.err()
}

// validEmail accepts a bare address (no display name) with a dotted domain.
func validEmail(s string) bool {
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || addr.Name != "" {
		return false
	}
	at := strings.LastIndexByte(s, '@')
	domain := s[at+1:]
	return at > 0 && strings.Contains(domain, ".") && !strings.HasPrefix(domain, ".") &&
		!strings.HasSuffix(domain, ".") && !strings.Contains(domain, "..")
}

// CountryCode turns a country name or ISO 3166 code into its alpha-2 code.
func CountryCode(s string) (string, bool) {
	c := countries.ByName(s)
	if c == countries.Unknown || c == countries.None || !c.IsValid() {
		return "", false
	}
	return c.Alpha2(), true
}

// E164 formats a phone number as E.164. Numbers without a +country prefix
// are read in the lead's country, if it has one.
func E164(phone, country string) (string, bool) {
	n, err := phonenumbers.Parse(phone, country)
	if err != nil || !phonenumbers.IsPossibleNumber(n) {
		return "", false
	}
	return phonenumbers.Format(n, phonenumbers.E164), true
}

// violations collects field violations to report them all at once.
type violations struct {
	prefix string
	opts   []apperr.Option
}

func (v *violations) add(field, description string) {
	v.opts = append(v.opts, apperr.Field(v.prefix+field, description))
}

func (v *violations) ok() bool { return len(v.opts) == 0 }

func (v *violations) err() error {
	if v.ok() {
		return nil
	}
	return apperr.InvalidArgument("invalid lead", v.opts...)
}
