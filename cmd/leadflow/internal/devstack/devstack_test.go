package devstack

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRunStartsTheWholeSuite is `make run` end to end: it builds every
// binary, starts the suite on a fresh data directory, checks /healthz and
// the seeded key, stops it with a cancel (Ctrl-C), and starts it again on
// the same data to prove state survives.
func TestRunStartsTheWholeSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary; skipped with -short")
	}
	bin := buildSuite(t)
	tmp := t.TempDir()
	// As root, PostgreSQL runs as the postgres user, which must be able to
	// reach the data dir; t.TempDir's directories are private.
	for d := tmp; d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()+"/"); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dataDir := filepath.Join(tmp, "data")

	key := runUntilHealthy(t, bin, dataDir, func(gateway, key string) {
		if code := get(t, gateway+"/v1/workspaces/demo", key); code != http.StatusOK {
			t.Fatalf("GET /v1/workspaces/demo with the dev key = %d, want 200", code)
		}
		if code := get(t, gateway+"/v1/workspaces/demo", ""); code != http.StatusUnauthorized {
			t.Fatalf("GET without key = %d, want 401", code)
		}
		if code := get(t, gateway+"/openapi.json", ""); code != http.StatusOK {
			t.Fatalf("GET /openapi.json = %d", code)
		}
	})
	// A restart reuses the data directory and the same key.
	again := runUntilHealthy(t, bin, dataDir, func(gateway, key string) {
		if code := get(t, gateway+"/v1/workspaces/demo", key); code != http.StatusOK {
			t.Fatalf("after restart: GET /v1/workspaces/demo = %d, want 200", code)
		}
	})
	if again != key {
		t.Fatal("the dev API key changed across restarts")
	}
}

func runUntilHealthy(t *testing.T, bin, dataDir string, check func(gateway, key string)) string {
	t.Helper()
	httpPort, grpcPort, metricsPort := freePort(t), freePortRange(t, len(backends)), freePortRange(t, len(backends)+1)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			DataDir: dataDir, BinDir: bin, PostgresPort: freePort(t),
			HTTPAddr: fmt.Sprintf("127.0.0.1:%d", httpPort), FirstGRPCPort: grpcPort, FirstMetricsPort: metricsPort, Out: out,
		})
	}()
	gateway := fmt.Sprintf("http://127.0.0.1:%d", httpPort)

	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "Leadflow is running") {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("Run returned before the suite was up: %v\n%s", err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("suite not up in time:\n%s", out.String())
		}
	}
	raw, err := os.ReadFile(filepath.Join(dataDir, "dev-api-key"))
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(string(raw))
	if !strings.Contains(out.String(), key) {
		t.Fatal("the banner does not print the dev API key")
	}
	if code := get(t, gateway+"/healthz", ""); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	for i := range len(backends) + 1 {
		if code := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort+i), ""); code != http.StatusOK {
			t.Fatalf("metrics endpoint %d = %d", i, code)
		}
	}
	check(gateway, key)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		t.Fatalf("suite did not stop:\n%s", out.String())
	}
	return key
}

// buildSuite builds every service and the CLI into a temp dir, as `make
// build` does.
func buildSuite(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := []string{}
	for _, svc := range append(append([]string{}, backends...), "gateway") {
		pkgs = append(pkgs, "./services/"+svc+"/cmd/"+svc)
	}
	cmd := exec.Command("go", append([]string{"build", "-o", bin + "/"}, pkgs...)...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func get(t *testing.T, url, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freePortRange finds n consecutive free ports.
func freePortRange(t *testing.T, n int) int {
	t.Helper()
	for range 50 {
		base := freePort(t)
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
