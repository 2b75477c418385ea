// Package suitetest runs the whole Leadflow suite, as `make run` does, for
// end-to-end tests: it builds every binary once per test binary, starts
// PostgreSQL, every service and the gateway on free ports, and stops them
// when the test ends.
package suitetest

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/leadflow/leadflow/cmd/leadflow/internal/devstack"
)

// Suite is a running suite.
type Suite struct {
	// Gateway is the REST base URL, e.g. http://127.0.0.1:41234.
	Gateway string
	// Key is the demo workspace's admin API key.
	Key string
	// MetricsPorts are the /metrics ports, services in start order then the gateway.
	MetricsPorts []int
	DataDir      string
	// DatabaseURL reaches the suite's database as the superuser, for tests
	// that look underneath the services (at an outbox, say).
	DatabaseURL string
	out         *syncBuffer
	stop        func() error
	faults      *devstack.Faults
}

// Output is everything the suite printed so far.
func (s *Suite) Output() string { return s.out.String() }

// Stop stops the suite (like Ctrl-C) and returns Run's error.
func (s *Suite) Stop() error { return s.stop() }

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Build compiles every service binary once per test binary and returns
// their directory.
func Build(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "leadflow-bin-")
		if buildErr != nil {
			return
		}
		var root string
		if root, buildErr = filepath.Abs("../../../.."); buildErr != nil {
			return
		}
		var pkgs []string
		for _, svc := range append(append([]string{}, devstack.Backends...), "gateway") {
			pkgs = append(pkgs, "./services/"+svc+"/cmd/"+svc)
		}
		cmd := exec.Command("go", append([]string{"build", "-o", binDir + "/"}, pkgs...)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// DataDir returns a fresh data directory that PostgreSQL, run as the
// postgres user when the tests run as root, can reach.
func DataDir(t testing.TB) string {
	t.Helper()
	tmp := t.TempDir()
	for d := tmp; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(tmp, "data")
}

// Start runs the suite on dataDir and waits until it is up. The suite is
// stopped when the test ends unless Stop was called.
func Start(t testing.TB, dataDir string) *Suite {
	t.Helper()
	bin := Build(t)
	// Ports are picked here and bound later by the services, so suites that
	// other test binaries start at the same moment could pick the same ones.
	// They take turns through a lock on a file until each suite is up.
	unlock := lockStartup(t)
	defer unlock()
	// One block of consecutive free ports, so that no two of the suite's
	// ports can be the same (each is only checked free, not held).
	n := len(devstack.Backends)
	base := FreePortRange(t, 2+n+n+1)
	httpPort, pgPort, grpcPort, metricsPort := base, base+1, base+2, base+2+n
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	faults := &devstack.Faults{}
	done := make(chan error, 1)
	go func() {
		done <- devstack.Run(ctx, devstack.Options{
			DataDir: dataDir, BinDir: bin, PostgresPort: pgPort,
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", httpPort), FirstGRPCPort: grpcPort,
			FirstMetricsPort: metricsPort, Out: out, Faults: faults,
		})
	}()
	var once sync.Once
	var stopErr error
	s := &Suite{
		Gateway:     fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		DataDir:     dataDir,
		DatabaseURL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/leadflow?sslmode=disable", pgPort),
		out:         out,
		faults:      faults,
		stop: func() error {
			once.Do(func() {
				cancel()
				select {
				case stopErr = <-done:
				case <-time.After(time.Minute):
					stopErr = fmt.Errorf("suite did not stop within a minute")
				}
			})
			return stopErr
		},
	}
	for i := range len(devstack.Backends) + 1 {
		s.MetricsPorts = append(s.MetricsPorts, metricsPort+i)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop suite: %v", err)
		}
		if t.Failed() {
			t.Logf("suite output:\n%s", out.String())
		}
	})

	deadline := time.After(2 * time.Minute)
	for !strings.Contains(out.String(), "Leadflow is running") {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("suite exited during start-up: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("suite not up within 2 minutes:\n%s", out.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, "dev-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	s.Key = strings.TrimSpace(string(raw))
	return s
}

// Do sends a request to the gateway with the suite's key (unless the
// header map sets its own Authorization) and returns the status and body.
func (s *Suite) Do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	var r *strings.Reader
	if body != "" {
		r = strings.NewReader(body)
	} else {
		r = strings.NewReader("")
	}
	req, err := http.NewRequest(method, s.Gateway+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.Key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// KillService sends SIGKILL to one service process ("scoring", ...) and
// waits until it is gone. The rest of the suite keeps running.
func (s *Suite) KillService(t testing.TB, name string) {
	t.Helper()
	if err := s.faults.KillService(name); err != nil {
		t.Fatal(err)
	}
}

// RestartService starts a killed service again and waits until the
// gateway's /healthz reports every service serving.
func (s *Suite) RestartService(t testing.TB, name string) {
	t.Helper()
	if err := s.faults.RestartService(name); err != nil {
		t.Fatal(err)
	}
	s.WaitHealthy(t, time.Minute)
}

// FreezeService stops one service process (SIGSTOP) as if it hung: it
// holds its connections and answers nothing until ThawService. The suite
// thaws every process when it stops.
func (s *Suite) FreezeService(t testing.TB, name string) {
	t.Helper()
	if err := s.faults.SignalService(name, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
}

// ThawService lets a frozen service process go on (SIGCONT).
func (s *Suite) ThawService(t testing.TB, name string) {
	t.Helper()
	if err := s.faults.SignalService(name, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

// CrashPostgres stops PostgreSQL in immediate mode, as a crash would, and
// waits until it has exited. The services are left running.
func (s *Suite) CrashPostgres(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.faults.CrashPostgres(ctx); err != nil {
		t.Fatal(err)
	}
}

// RestartPostgres starts PostgreSQL again after CrashPostgres, on the same
// data and port, and waits until it accepts connections (crash recovery
// included). It does not wait for the services to reconnect.
func (s *Suite) RestartPostgres(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := s.faults.RestartPostgres(ctx); err != nil {
		t.Fatal(err)
	}
}

// WaitHealthy waits until the gateway's /healthz answers 200, which it does
// when every service reports SERVING.
func (s *Suite) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	Eventually(t, timeout, "every service to serve (GET /healthz = 200)", func() bool {
		resp, err := client.Get(s.Gateway + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Eventually polls cond every 100ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lockStartup takes the machine-wide suite start-up lock.
func lockStartup(t testing.TB) func() {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "leadflow-suitetest.lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
}

// FreePort returns a port free on 127.0.0.1 right now. It picks below the
// kernel's ephemeral range (32768 and up), where outgoing connections
// cannot take it before the service binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// FreePortRange returns the first of n consecutive free ports.
func FreePortRange(t testing.TB, n int) int {
	t.Helper()
	for range 50 {
		base := FreePort(t)
		ok := true
		for i := 1; i < n && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no range of free ports")
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
