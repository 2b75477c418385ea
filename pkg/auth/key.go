// Package auth authenticates callers with API keys and carries the resulting
// principal (workspace and scopes) through the request context.
//
// A key looks like "lf_<id>_<secret>". The id is public and indexes the key;
// only a SHA-256 hash of the whole key is stored. Keys carry 256 bits of
// randomness, so a fast hash is enough: there is nothing to brute-force.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"strings"
)

const keyPrefix = "lf_"

// keyEncoding is lowercase base32 without padding: URL-, header- and shell-safe.
var keyEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrMalformedKey reports a string that cannot be a Leadflow API key.
var ErrMalformedKey = errors.New("malformed api key")

// NewKey returns a fresh key id, the full secret to hand to the caller, and
// the hash to store.
func NewKey() (id, secret string, hash []byte, err error) {
	idBytes := make([]byte, 10)
	secretBytes := make([]byte, 32)
	if _, err := rand.Read(idBytes); err != nil {
		return "", "", nil, err
	}
	if _, err := rand.Read(secretBytes); err != nil {
		return "", "", nil, err
	}
	id = keyEncoding.EncodeToString(idBytes)
	secret = keyPrefix + id + "_" + keyEncoding.EncodeToString(secretBytes)
	return id, secret, HashKey(secret), nil
}

// KeyID returns the public id embedded in a secret key.
func KeyID(secret string) (string, error) {
	rest, ok := strings.CutPrefix(secret, keyPrefix)
	if !ok {
		return "", ErrMalformedKey
	}
	id, tail, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 || len(tail) < 32 {
		return "", ErrMalformedKey
	}
	return id, nil
}

// HashKey is the stored form of a secret key.
func HashKey(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// MatchKey reports, in constant time, whether secret hashes to hash.
func MatchKey(secret string, hash []byte) bool {
	return subtle.ConstantTimeCompare(HashKey(secret), hash) == 1
}
