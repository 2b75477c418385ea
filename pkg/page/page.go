// Package page implements AIP-158 pagination: page sizes with a default and a
// ceiling, and opaque page tokens that carry a keyset cursor.
//
// Tokens are base64url JSON of the cursor plus a fingerprint of the list's
// filters, so a token cannot be replayed against a different query.
package page

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"hash/fnv"
	"strconv"
)

// Sizes every List RPC shares.
const (
	DefaultSize = 50
	MaxSize     = 1000
)

// ErrInvalidToken reports a page token that was not issued for this query.
var ErrInvalidToken = errors.New("invalid page_token")

// Size turns a requested page_size into the number of rows to return.
func Size(requested int32) int {
	switch {
	case requested <= 0:
		return DefaultSize
	case requested > MaxSize:
		return MaxSize
	default:
		return int(requested)
	}
}

type envelope[C any] struct {
	Cursor C      `json:"c"`
	Query  string `json:"q,omitempty"`
}

// Encode returns the token for the page after cursor, bound to query (any
// string that identifies the filters of the list).
func Encode[C any](cursor C, query string) string {
	b, err := json.Marshal(envelope[C]{Cursor: cursor, Query: fingerprint(query)})
	if err != nil {
		// Cursors are plain structs of strings, numbers and times.
		panic("page: cursor does not marshal: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Decode parses token into a cursor. An empty token means the first page and
// returns ok=false.
func Decode[C any](token, query string) (cursor C, ok bool, err error) {
	if token == "" {
		return cursor, false, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return cursor, false, ErrInvalidToken
	}
	var env envelope[C]
	if err := json.Unmarshal(raw, &env); err != nil || env.Query != fingerprint(query) {
		return cursor, false, ErrInvalidToken
	}
	return env.Cursor, true, nil
}

func fingerprint(query string) string {
	if query == "" {
		return ""
	}
	h := fnv.New64a()
	h.Write([]byte(query))
	return strconv.FormatUint(h.Sum64(), 36)
}

// List serves one page of a keyset-paginated list. It decodes token
// (bound to query), asks fetch for up to Size(requested)+1 rows after the
// cursor, and returns at most Size(requested) of them with the token of
// the next page ("" on the last). cursorOf gives the cursor of a row. A
// token not issued for this query is ErrInvalidToken.
func List[T, C any](token, query string, requested int32, fetch func(after *C, limit int) ([]T, error), cursorOf func(T) C) ([]T, string, error) {
	cursor, ok, err := Decode[C](token, query)
	if err != nil {
		return nil, "", err
	}
	var after *C
	if ok {
		after = &cursor
	}
	size := Size(requested)
	rows, err := fetch(after, size+1)
	if err != nil {
		return nil, "", err
	}
	if len(rows) <= size {
		return rows, "", nil
	}
	rows = rows[:size]
	return rows, Encode(cursorOf(rows[size-1]), query), nil
}
