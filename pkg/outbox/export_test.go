package outbox

import "context"

// DeliverLane exposes one lane's pass to the tests.
func (r *Relay) DeliverLane(ctx context.Context, lane, lanes int) (int, error) {
	return r.deliverDue(ctx, lane, lanes)
}

// Truncate exposes how errors are cut to fit last_error.
var Truncate = truncate
