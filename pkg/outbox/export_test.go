package outbox

import "context"

// DeliverLane exposes one lane's pass to the tests: it returns how many
// events the pass leased.
func (r *Relay) DeliverLane(ctx context.Context, lane, lanes int) (int, error) {
	return r.deliverDue(ctx, lane, lanes)
}

// BundleFrom is how many events of one call go in bundles.
const BundleFrom = bundleFrom

// Truncate exposes how errors are cut to fit last_error.
var Truncate = truncate
