package auth

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// LookupFunc asks the identity service who a key belongs to.
type LookupFunc func(ctx context.Context, secret string) (Principal, error)

// CachingAuthenticator remembers answers of a slower Authenticator for a
// short time, so that each request does not cost a round trip to identity.
// Revocation takes effect within TTL.
type CachingAuthenticator struct {
	lookup      LookupFunc
	ttl         time.Duration
	negativeTTL time.Duration
	maxEntries  int
	now         func() time.Time

	mu      sync.Mutex
	entries map[[32]byte]cacheEntry
}

type cacheEntry struct {
	principal Principal
	err       error
	expires   time.Time
}

// NewCachingAuthenticator caches lookup answers: good keys for ttl, refused
// keys for a tenth of it (so a freshly created key works quickly).
func NewCachingAuthenticator(lookup LookupFunc, ttl time.Duration) *CachingAuthenticator {
	return &CachingAuthenticator{
		lookup:      lookup,
		ttl:         ttl,
		negativeTTL: ttl / 10,
		maxEntries:  10000,
		now:         time.Now,
		entries:     map[[32]byte]cacheEntry{},
	}
}

// Authenticate implements Authenticator.
func (c *CachingAuthenticator) Authenticate(ctx context.Context, secret string) (Principal, error) {
	if _, err := KeyID(secret); err != nil {
		return Principal{}, ErrUnauthenticated
	}
	// Keyed by hash so the cache never holds secrets.
	k := sha256.Sum256([]byte(secret))
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.principal, e.err
	}

	p, err := c.lookup(ctx, secret)
	if status.Code(err) == codes.Unauthenticated {
		err = ErrUnauthenticated
	}
	switch {
	case err == nil:
		c.store(k, cacheEntry{principal: p, expires: now.Add(c.ttl)})
	case err == ErrUnauthenticated:
		c.store(k, cacheEntry{err: err, expires: now.Add(c.negativeTTL)})
	}
	return p, err
}

func (c *CachingAuthenticator) store(k [32]byte, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.maxEntries {
		// Dropping everything is crude but bounded and rare: the cache only
		// fills when more than maxEntries distinct keys call within a TTL.
		clear(c.entries)
	}
	c.entries[k] = e
}
