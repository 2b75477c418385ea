package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
)

// Main runs a service: run gets a context that is cancelled on SIGINT or
// SIGTERM, and a non-nil error from run is printed to stderr and exits the
// process with status 1. A second signal during shutdown kills the process
// at once. Call it as the whole body of main:
//
//	func main() { grpcserver.Main(run) }
func Main(run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // restore default handling so a second signal is fatal
	}()
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		os.Exit(1)
	}
}

// Closers closes resources in the reverse order they were added, the way
// defers would, but from one place after the servers have stopped:
//
//	var closers grpcserver.Closers
//	defer func() { err = errors.Join(err, closers.Close(shutdownCtx)) }()
//	closers.Add(telemetryShutdown)
//	closers.AddFunc(pool.Close)
//
// The zero value is ready to use and safe for concurrent use.
type Closers struct {
	mu  sync.Mutex
	fns []func(context.Context) error
}

// Add registers fn to run on Close.
func (c *Closers) Add(fn func(context.Context) error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fns = append(c.fns, fn)
}

// AddFunc registers a close function that takes no context and cannot fail,
// such as (*pgxpool.Pool).Close.
func (c *Closers) AddFunc(fn func()) {
	c.Add(func(context.Context) error { fn(); return nil })
}

// Close runs the registered functions, last added first, and joins their
// errors. Every function runs even if an earlier one fails; each runs at
// most once, so Close may be called again.
func (c *Closers) Close(ctx context.Context) error {
	c.mu.Lock()
	fns := c.fns
	c.fns = nil
	c.mu.Unlock()

	var errs []error
	for i := len(fns) - 1; i >= 0; i-- {
		errs = append(errs, fns[i](ctx))
	}
	return errors.Join(errs...)
}
