package devstack

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
)

// Faults crashes and restarts parts of a running suite for fault-injection
// tests: one service process or the local PostgreSQL. Pass it in
// Options.Faults; its methods work once the suite is up. A process killed
// through Faults does not stop the suite, unlike one that dies by itself.
type Faults struct {
	mu    sync.Mutex
	procs *group
	pg    *localPostgres
}

func (f *Faults) connect(procs *group, pg *localPostgres) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.procs, f.pg = procs, pg
}

func (f *Faults) group() (*group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.procs == nil {
		return nil, errors.New("devstack: the suite is not up")
	}
	return f.procs, nil
}

func (f *Faults) postgres() (*localPostgres, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.procs == nil:
		return nil, errors.New("devstack: the suite is not up")
	case f.pg == nil:
		return nil, errors.New("devstack: PostgreSQL was given (DatabaseURL), not started by the suite")
	}
	return f.pg, nil
}

// KillService sends SIGKILL to the service process name ("scoring",
// "gateway", ...) and waits until it has exited.
func (f *Faults) KillService(name string) error {
	g, err := f.group()
	if err != nil {
		return err
	}
	return g.kill(name)
}

// SignalService sends sig to the service process name, e.g. SIGSTOP to
// freeze it as a hung process would be and SIGCONT to let it go on.
func (f *Faults) SignalService(name string, sig syscall.Signal) error {
	g, err := f.group()
	if err != nil {
		return err
	}
	p, err := g.find(name)
	if err != nil {
		return err
	}
	return p.cmd.Process.Signal(sig)
}

// RestartService starts the service process name again after KillService,
// with the same binary, environment and ports. It does not wait until the
// service serves.
func (f *Faults) RestartService(name string) error {
	g, err := f.group()
	if err != nil {
		return err
	}
	return g.restart(name)
}

// CrashPostgres stops PostgreSQL in immediate mode, as a crash would: every
// connection drops, nothing is checkpointed, and the next start runs crash
// recovery. It waits until the server has exited.
func (f *Faults) CrashPostgres(ctx context.Context) error {
	pg, err := f.postgres()
	if err != nil {
		return err
	}
	return pg.crash(ctx)
}

// RestartPostgres starts PostgreSQL again on the same data directory and
// port after CrashPostgres, and waits until it accepts connections.
func (f *Faults) RestartPostgres(ctx context.Context) error {
	pg, err := f.postgres()
	if err != nil {
		return err
	}
	select {
	case <-pg.current().Done():
	default:
		return errors.New("devstack: PostgreSQL is still running")
	}
	return pg.start(ctx)
}

// find returns the process named name.
func (g *group) find(name string) (*process, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range g.procs {
		if p.name == name {
			return p, nil
		}
	}
	return nil, fmt.Errorf("no process named %q", name)
}

// kill sends SIGKILL to one process and waits until it has exited.
func (g *group) kill(name string) error {
	p, err := g.find(name)
	if err != nil {
		return err
	}
	g.mu.Lock()
	p.killed = true
	g.mu.Unlock()
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("kill %s: %w", name, err)
	}
	<-p.done
	return nil
}

// restart starts a process Faults killed again, with its binary and environment.
func (g *group) restart(name string) error {
	p, err := g.find(name)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
	default:
		return fmt.Errorf("%s is still running", name)
	}
	return g.launch(&process{name: p.name, path: p.path, env: p.env})
}

// crash stops the server in immediate mode and marks it crashed, so that
// Run's shutdown does not try to stop it again.
func (p *localPostgres) crash(ctx context.Context) error {
	p.mu.Lock()
	c := p.cluster
	p.crashed = true
	p.mu.Unlock()
	return c.Crash(ctx)
}
