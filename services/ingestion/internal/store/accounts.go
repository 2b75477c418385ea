package store

import (
	"sync"

	"github.com/leadflow/leadflow/services/ingestion/internal/lead"
)

// maxKnownAccounts bounds the accounts a Store remembers; past it, it
// starts over.
const maxKnownAccounts = 100_000

// accountKey is an account's workspace and company domain.
type accountKey struct{ workspace, domain string }

// knownAccounts remembers committed accounts, so a capture need not look up
// the accounts of domains it saw before: an import batch names hundreds.
// Accounts are never changed or deleted, so an id once committed stays
// right; ids are learned only after the transaction that read or created
// them committed, so a rollback never leaves one without its account.
type knownAccounts struct {
	mu  sync.Mutex
	ids map[accountKey]string
}

// lookup returns the known accounts of domains in ws, and the domains left.
func (k *knownAccounts) lookup(ws string, domains []string) (map[string]string, []string) {
	ids := make(map[string]string, len(domains))
	var missing []string
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, d := range domains {
		if id, ok := k.ids[accountKey{ws, d}]; ok {
			ids[d] = id
		} else {
			missing = append(missing, d)
		}
	}
	return ids, missing
}

// learn remembers the accounts of the leads of a committed capture.
func (k *knownAccounts) learn(ws string, outs []lead.Outcome) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, o := range outs {
		if o.Lead.CompanyDomain == "" || o.Lead.AccountID == "" {
			continue
		}
		if k.ids == nil || len(k.ids) >= maxKnownAccounts {
			k.ids = map[accountKey]string{}
		}
		k.ids[accountKey{ws, o.Lead.CompanyDomain}] = o.Lead.AccountID
	}
}
