package store

// SetExactLimit sets how many entries a range may hold for the funnel to be
// computed from the transitions alone; -1 reads the rollups whenever they
// serve the query.
func (s *Store) SetExactLimit(n int64) { s.exactLimit = n }

// HistError is histError, for the tests.
var HistError = histError
