package outbox

import "context"

// DeliverLane exposes one lane's pass to the tests.
func (r *Relay) DeliverLane(ctx context.Context, lane, lanes int) (int, error) {
	return r.deliverDue(ctx, lane, lanes)
}
