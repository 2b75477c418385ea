package devstack_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/leadflow/leadflow/cmd/leadflow/internal/suitetest"
)

// TestRunStartsTheWholeSuite is `make run` end to end: it starts the suite
// on a fresh data directory, checks /healthz, the seeded key and every
// /metrics endpoint, stops it as Ctrl-C would, and starts it again on the
// same data to prove state and the key survive.
func TestRunStartsTheWholeSuite(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary; skipped with -short")
	}
	dataDir := suitetest.DataDir(t)

	s := suitetest.Start(t, dataDir)
	if !strings.Contains(s.Output(), s.Key) {
		t.Fatal("the banner does not print the dev API key")
	}
	for path, want := range map[string]int{"/healthz": 200, "/v1/workspaces/demo": 200, "/openapi.json": 200} {
		if code, body := s.Do(t, http.MethodGet, path, ""); code != want {
			t.Fatalf("GET %s = %d %s, want %d", path, code, body, want)
		}
	}
	for _, port := range s.MetricsPorts {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("metrics on %d: %v %v", port, err, resp)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest(http.MethodGet, s.Gateway+"/v1/workspaces/demo", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without key: %v %v, want 401", err, resp)
	}
	resp.Body.Close()
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, s.Output())
	}

	again := suitetest.Start(t, dataDir)
	if again.Key != s.Key {
		t.Fatal("the dev API key changed across restarts")
	}
	if code, _ := again.Do(t, http.MethodGet, "/v1/workspaces/demo", ""); code != 200 {
		t.Fatalf("after restart: GET /v1/workspaces/demo = %d", code)
	}
}
