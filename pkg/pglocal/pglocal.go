// Package pglocal runs a local PostgreSQL server from the machine's own
// binaries, for the test harness (pkg/pgtest) and the dev runner.
//
// The postmaster runs as a child of the calling process rather than through
// pg_ctl: the kernel sends it SIGINT (fast shutdown) if the caller dies, so a
// crashed test binary or dev runner never leaves a server behind. It listens on
// 127.0.0.1 only and has no Unix socket, so data directory paths may be of any
// length and no socket directory needs to be writable.
//
// When the caller is root, initdb and postgres refuse to run, so both run as
// the "postgres" system user and the data directory is chowned to it.
package pglocal

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotInstalled reports that the PostgreSQL server binaries are missing.
var ErrNotInstalled = errors.New("PostgreSQL server binaries (initdb, postgres) not found in PATH or /usr/lib/postgresql/*/bin; " +
	"install them, e.g. `apt-get install postgresql` on Debian/Ubuntu or `brew install postgresql` on macOS")

// ErrAlreadyRunning reports that another postmaster is serving the data directory.
var ErrAlreadyRunning = errors.New("a PostgreSQL server is already running on this data directory")

// superuser is the bootstrap role initdb creates; trust auth lets it in without a password.
const superuser = "postgres"

// defaultStartTimeout bounds startup, which includes crash recovery of a dev data directory.
const defaultStartTimeout = 2 * time.Minute

// binGlob is where Debian and Ubuntu install versioned server binaries; a variable for tests.
var binGlob = "/usr/lib/postgresql/*/bin"

// Options configures Start.
type Options struct {
	// DataDir is the cluster's data directory; initdb runs if it holds no cluster yet.
	DataDir string
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// Fsync keeps durability on. Off, initdb skips fsync and the server runs with
	// fsync, synchronous_commit and full_page_writes off: fast, but a machine crash
	// can corrupt the cluster, which is fine for throwaway test clusters only.
	Fsync bool
	// LogFile receives the server's output; the default is DataDir + ".log".
	LogFile string
	// ExtraConfig holds further server settings, passed as -c name=value.
	ExtraConfig map[string]string
	// StartTimeout bounds the wait for the server to accept connections; default 2m.
	StartTimeout time.Duration
}

// Cluster is a running PostgreSQL server started by Start.
type Cluster struct {
	dataDir string
	port    int
	proc    *os.Process
	done    chan struct{} // closed when the postmaster has exited
	waitErr error         // the postmaster's exit status, set before done is closed

	stopOnce sync.Once
	stopErr  error
}

// Start initialises DataDir if needed, starts a server on it and waits until it
// accepts connections.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.DataDir == "" {
		return nil, errors.New("pglocal: DataDir is required")
	}
	dataDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pglocal: resolve data dir: %w", err)
	}
	opts.DataDir = dataDir
	if opts.LogFile == "" {
		opts.LogFile = dataDir + ".log"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = defaultStartTimeout
	}

	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	if err := prepareDataDir(dataDir, cred); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dataDir, "PG_VERSION")); errors.Is(err, fs.ErrNotExist) {
		if err := initdb(ctx, bin, dataDir, opts.Fsync, cred); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if err := clearStalePID(dataDir); err != nil {
		return nil, err
	}

	// A port picked here can be taken by someone else before the server binds
	// it, so an automatic port gets a few tries.
	tries := 1
	if opts.Port == 0 {
		tries = 3
	}
	for i := 0; ; i++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return nil, err
			}
		}
		c, err := start(ctx, bin, opts, port, cred)
		if err == nil || i+1 >= tries || ctx.Err() != nil {
			return c, err
		}
	}
}

// URL returns the connection URL of database dbname as the superuser.
func (c *Cluster) URL(dbname string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", superuser, c.port, dbname)
}

// Port returns the TCP port the server listens on.
func (c *Cluster) Port() int { return c.port }

// DataDir returns the absolute path of the data directory.
func (c *Cluster) DataDir() string { return c.dataDir }

// Done is closed when the server has exited, whether through Stop or not.
func (c *Cluster) Done() <-chan struct{} { return c.done }

// Stop shuts the server down with a fast shutdown (clients are disconnected,
// then a checkpoint is written). If ctx ends first it escalates to an
// immediate shutdown and finally to SIGKILL. Calling Stop again returns the
// first result.
func (c *Cluster) Stop(ctx context.Context) error {
	c.stopOnce.Do(func() { c.stopErr = c.stop(ctx) })
	return c.stopErr
}

func (c *Cluster) stop(ctx context.Context) error {
	select {
	case <-c.done:
		return fmt.Errorf("pglocal: server had already exited: %w", c.waitErr)
	default:
	}
	// Errors from Signal mean the process is already gone, which done reports.
	_ = c.proc.Signal(syscall.SIGINT)
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
	}
	_ = c.proc.Signal(syscall.SIGQUIT)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.proc.Kill()
		<-c.done
	}
	return fmt.Errorf("pglocal: fast shutdown did not finish, server was killed: %w", ctx.Err())
}

// Crash stops the server as a crash would, for fault-injection tests: an
// immediate shutdown (pg_ctl's -m immediate), so every connection drops at
// once, no checkpoint is written and the next Start on the data directory
// runs crash recovery. Committed transactions survive when Fsync is on. It
// waits until the server has exited, escalating to SIGKILL if ctx ends
// first. A later Stop returns an error saying the server had exited.
func (c *Cluster) Crash(ctx context.Context) error {
	select {
	case <-c.done:
		return fmt.Errorf("pglocal: server had already exited: %w", c.waitErr)
	default:
	}
	_ = c.proc.Signal(syscall.SIGQUIT) // an error means it is gone, which done reports
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
	}
	_ = c.proc.Kill()
	<-c.done
	return fmt.Errorf("pglocal: immediate shutdown did not finish, server was killed: %w", ctx.Err())
}

// binaries holds the paths of the server programs.
type binaries struct {
	initdb, postgres string
}

// findBinaries looks in PATH first, then picks the newest versioned Debian install.
func findBinaries() (binaries, error) {
	var dirs []string
	if p, err := exec.LookPath("initdb"); err == nil {
		// The PATH entry is often a symlink (Debian's /usr/local/bin shims); the
		// matching postgres sits beside the real file.
		if real, err := filepath.EvalSymlinks(p); err == nil {
			dirs = append(dirs, filepath.Dir(real))
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	versioned, _ := filepath.Glob(binGlob) // the pattern is constant, so no error
	sort.Slice(versioned, func(i, j int) bool {
		return versionOf(versioned[i]) > versionOf(versioned[j])
	})
	dirs = append(dirs, versioned...)
	for _, d := range dirs {
		b := binaries{initdb: filepath.Join(d, "initdb"), postgres: filepath.Join(d, "postgres")}
		if isExecutable(b.initdb) && isExecutable(b.postgres) {
			return b, nil
		}
	}
	return binaries{}, ErrNotInstalled
}

// versionOf extracts the major version from .../postgresql/<major>/bin.
func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// serverCredential returns the identity to run the server programs as: nil to
// run as ourselves, or the postgres system user when we are root.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pglocal: running as root needs the 'postgres' system user (created by the postgresql package): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pglocal: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pglocal: postgres gid %q: %w", u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	return cred, nil
}

// prepareDataDir creates the data directory and, as root, hands it (and any
// parent created for it) to the postgres user, then checks that user can
// reach it, since initdb's own error for that is obscure.
func prepareDataDir(dataDir string, cred *syscall.Credential) error {
	var created []string
	for d := dataDir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil || d == filepath.Dir(d) {
			break
		}
		created = append(created, d)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("pglocal: create data dir: %w", err)
	}
	if cred == nil {
		return nil
	}
	for _, d := range append(created, dataDir) {
		if err := os.Chown(d, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pglocal: hand %s to the postgres user: %w", d, err)
		}
	}
	for d := filepath.Dir(dataDir); ; d = filepath.Dir(d) {
		if !searchable(d, cred) {
			return fmt.Errorf("pglocal: the postgres user cannot enter %s, a parent of data dir %s; "+
				"put the data dir under a path it can traverse or make %s searchable (chmod o+x)", d, dataDir, d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// searchable reports whether the user in cred may traverse directory d.
func searchable(d string, cred *syscall.Credential) bool {
	st, err := os.Stat(d)
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true // cannot tell; let initdb report it
	}
	perm := st.Mode().Perm()
	switch {
	case sys.Uid == cred.Uid:
		return perm&0o100 != 0
	case sys.Gid == cred.Gid || slices.Contains(cred.Groups, sys.Gid):
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}

// initdb creates a cluster in the empty dataDir. If it fails or is
// interrupted, it empties dataDir again so the next Start can retry rather
// than trip over a half-made cluster.
func initdb(ctx context.Context, bin binaries, dataDir string, fsync bool, cred *syscall.Credential) error {
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("pglocal: data dir %s holds no cluster (no PG_VERSION) but is not empty; empty it or pick another", dataDir)
	}
	cmd := exec.CommandContext(ctx, bin.initdb, initdbArgs(dataDir, fsync)...)
	cmd.Env = serverEnv()
	cmd.Dir = dataDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		entries, _ := os.ReadDir(dataDir)
		for _, e := range entries {
			_ = os.RemoveAll(filepath.Join(dataDir, e.Name()))
		}
		return fmt.Errorf("pglocal: initdb %s: %w\n%s", dataDir, err, out)
	}
	return nil
}

func initdbArgs(dataDir string, fsync bool) []string {
	args := []string{"-D", dataDir, "-U", superuser, "-A", "trust", "-E", "UTF8", "--no-locale"}
	if !fsync {
		args = append(args, "-N")
	}
	return args
}

// serverArgs returns the postgres command line; -c settings override postgresql.conf.
func serverArgs(opts Options, port int) []string {
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(port),
		"unix_socket_directories": "",
		"max_connections":         "200",
		// Error details and statements can carry personal data (a duplicate
		// email in a unique violation's DETAIL); keep them out of the log.
		"log_error_verbosity":     "terse",
		"log_min_error_statement": "panic",
	}
	if !opts.Fsync {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	maps.Copy(settings, opts.ExtraConfig)
	args := []string{"-D", opts.DataDir}
	for _, k := range slices.Sorted(maps.Keys(settings)) {
		args = append(args, "-c", k+"="+settings[k])
	}
	return args
}

// serverEnv drops PG* variables so the caller's libpq settings cannot leak in.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// clearStalePID removes a postmaster.pid left by a server that is gone.
// PostgreSQL removes such a file itself unless its PID now belongs to another
// live process, which is common after a container restart.
func clearStalePID(dataDir string) error {
	pidFile := filepath.Join(dataDir, "postmaster.pid")
	f, err := os.Open(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	line, _ := bufio.NewReader(f).ReadString('\n')
	f.Close()
	if pid, err := strconv.Atoi(strings.TrimSpace(line)); err == nil && pid > 0 && servesDataDir(pid, dataDir) {
		return fmt.Errorf("pglocal: %w (pid %d, %s); stop it first", ErrAlreadyRunning, pid, dataDir)
	}
	if err := os.Remove(pidFile); err != nil {
		return fmt.Errorf("pglocal: remove stale %s: %w", pidFile, err)
	}
	return nil
}

// servesDataDir reports whether pid is a postgres process working in dataDir.
// If the process's directory cannot be read it errs on the side of "yes".
func servesDataDir(pid int, dataDir string) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || strings.TrimSpace(string(comm)) != "postgres" {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true
	}
	want, err := filepath.EvalSymlinks(dataDir)
	return err != nil || cwd == want
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pglocal: pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// start launches the postmaster and waits until it accepts connections.
func start(ctx context.Context, bin binaries, opts Options, port int, cred *syscall.Credential) (*Cluster, error) {
	logFile, err := os.OpenFile(opts.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("pglocal: open log file: %w", err)
	}
	defer logFile.Close() // the child holds its own copy of the descriptor

	cmd := exec.Command(bin.postgres, serverArgs(opts, port)...)
	cmd.Env = serverEnv()
	cmd.Dir = opts.DataDir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: cred,
		// Its own process group keeps a terminal's Ctrl-C from reaching the
		// server before the caller has shut its clients down.
		Setpgid:   true,
		Pdeathsig: syscall.SIGINT,
	}

	c := &Cluster{dataDir: opts.DataDir, port: port, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the forking OS thread exits, not the process; a
		// thread locked for the server's lifetime never exits early.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("pglocal: start postgres: %w", err)
	}
	c.proc = cmd.Process

	if err := c.waitReady(ctx, opts.StartTimeout); err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = c.Stop(stopCtx)
		return nil, fmt.Errorf("pglocal: %w\n%s: last lines:\n%s", err, opts.LogFile, tail(opts.LogFile, 20))
	}
	return c, nil
}

// waitReady polls a real connection, which is what callers need, until it
// succeeds, the server exits or the timeout passes.
func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, time.Second)
		conn, err := pgconn.Connect(attemptCtx, c.URL("postgres"))
		cancelAttempt()
		if err == nil {
			return conn.Close(ctx)
		}
		lastErr = err
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited during startup: %w", c.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections within %s: %w", timeout, lastErr)
		case <-tick.C:
		}
	}
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
