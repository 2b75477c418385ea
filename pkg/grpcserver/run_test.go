package grpcserver_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/leadflow/leadflow/pkg/grpcserver"
)

func TestClosersRunInReverseOrder(t *testing.T) {
	var (
		closers grpcserver.Closers
		order   []string
		errPool = errors.New("pool close failed")
		errOtel = errors.New("flush failed")
	)
	closers.Add(func(context.Context) error { order = append(order, "telemetry"); return errOtel })
	closers.AddFunc(func() { order = append(order, "pool") })
	closers.Add(func(context.Context) error { order = append(order, "cache"); return errPool })

	err := closers.Close(t.Context())
	if want := []string{"cache", "pool", "telemetry"}; !slices.Equal(order, want) {
		t.Errorf("close order = %v, want %v", order, want)
	}
	if !errors.Is(err, errPool) || !errors.Is(err, errOtel) {
		t.Errorf("Close() = %v, want both errors joined", err)
	}
	if err := closers.Close(t.Context()); err != nil || len(order) != 3 {
		t.Errorf("second Close ran closers again: %v, %v", err, order)
	}
}
