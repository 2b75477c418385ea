// Package devstack runs the whole Leadflow suite on one machine: a local
// PostgreSQL (unless one is given), migrations, demo data, and every service
// as its own process, the way they run in production.
package devstack

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/leadflow/leadflow/pkg/auth"
	"github.com/leadflow/leadflow/pkg/pglocal"
)

// Options configure Run.
type Options struct {
	DataDir       string
	BinDir        string
	DatabaseURL   string
	PostgresPort  int
	HTTPAddr      string
	FirstGRPCPort int
	// FirstMetricsPort is the first of the consecutive /metrics ports, in
	// backends order, the gateway's last.
	FirstMetricsPort int
	// Out receives the banner and the services' prefixed output.
	Out io.Writer
	// Faults, when set, is connected to the suite before the banner is
	// printed, so that fault-injection tests can crash and restart parts of
	// it. `leadflow dev` leaves it nil.
	Faults *Faults
}

// DemoWorkspace is the workspace the dev stack seeds.
const DemoWorkspace = "demo"

// Backends are the gRPC services in start order; identity comes first
// because every other service authenticates keys against it.
var Backends = []string{"identity", "ingestion", "scoring", "lifecycle", "handoff"}

// Run starts everything and blocks until ctx is cancelled or a process dies.
func Run(ctx context.Context, opts Options) error {
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find binaries: %w", err)
		}
		opts.BinDir = filepath.Dir(exe)
	}
	if err := os.MkdirAll(opts.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}

	dbURL := opts.DatabaseURL
	var pg *localPostgres
	if dbURL == "" {
		pg = &localPostgres{opts: pglocal.Options{
			DataDir: filepath.Join(opts.DataDir, "pg"),
			Port:    opts.PostgresPort,
			Fsync:   true,
			LogFile: filepath.Join(opts.DataDir, "postgres.log"),
		}}
		if err := pg.start(ctx); err != nil {
			return err
		}
		defer pg.stop(ctx, opts.Out)
		cluster := pg.current()
		if err := ensureDatabase(ctx, cluster.URL("postgres"), "leadflow"); err != nil {
			return err
		}
		dbURL = cluster.URL("leadflow")
		fmt.Fprintf(opts.Out, "PostgreSQL on 127.0.0.1:%d, data in %s\n", cluster.Port(), cluster.DataDir())
	}

	key, keyFile, err := devKey(opts.DataDir)
	if err != nil {
		return err
	}
	env := baseEnv(opts, dbURL)

	for _, svc := range Backends {
		if err := runOnce(ctx, opts, env, svc, "migrate"); err != nil {
			return err
		}
	}
	if err := runOnce(ctx, opts, env, "identity", "seed", "--workspace", DemoWorkspace, "--api-key-file", keyFile); err != nil {
		return err
	}

	procs := newGroup(ctx, opts.Out)
	defer procs.stop(15 * time.Second)
	for _, svc := range append(Backends, "gateway") {
		if err := procs.start(filepath.Join(opts.BinDir, svc), svc, env); err != nil {
			return err
		}
	}

	gatewayURL := "http://localhost" + portOf(opts.HTTPAddr)
	if err := waitHealthy(ctx, gatewayURL+"/healthz", procs.exited, time.Minute); err != nil {
		return err
	}
	if err := seedDemo(ctx, opts, key); err != nil {
		return err
	}
	if opts.Faults != nil {
		opts.Faults.connect(procs, pg)
	}
	printBanner(opts, gatewayURL, key, keyFile)

	select {
	case <-ctx.Done():
		fmt.Fprintln(opts.Out, "\nshutting down…")
		return nil
	case name := <-procs.exited:
		return fmt.Errorf("%s exited; stopping the suite", name)
	}
}

// baseEnv is the environment every process gets. Services read
// <SERVICE>_-prefixed settings, so each one is told the database, its own
// listen address, the internal token and every peer's address; handoff may
// also post webhooks to private networks. Ports are consecutive from
// FirstGRPCPort in backends order.
func baseEnv(opts Options, dbURL string) []string {
	token := randomToken()
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(opts.FirstGRPCPort+i) }
	metrics := func(i int) string { return "127.0.0.1:" + strconv.Itoa(opts.FirstMetricsPort+i) }
	env := append(os.Environ(),
		"GATEWAY_HTTP_ADDR="+opts.HTTPAddr,
		"GATEWAY_INTERNAL_TOKEN="+token,
		"GATEWAY_METRICS_ADDR="+metrics(len(Backends)),
		// Local demos point webhooks at receivers on localhost, which
		// production refuses.
		"HANDOFF_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true",
	)
	for i, svc := range Backends {
		up := strings.ToUpper(svc)
		env = append(env,
			up+"_DATABASE_URL="+dbURL,
			up+"_GRPC_ADDR="+addr(i),
			up+"_INTERNAL_TOKEN="+token,
			up+"_METRICS_ADDR="+metrics(i),
		)
		for j, peer := range Backends {
			env = append(env, up+"_"+strings.ToUpper(peer)+"_ADDR="+addr(j))
		}
		env = append(env, "GATEWAY_"+up+"_ADDR="+addr(i))
	}
	return env
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// devKey returns the dev API key, creating it on first run. It survives
// restarts so that scripts and bookmarks keep working.
func devKey(dataDir string) (key, path string, err error) {
	path = filepath.Join(dataDir, "dev-api-key")
	if b, err := os.ReadFile(path); err == nil {
		key = strings.TrimSpace(string(b))
		if _, err := auth.KeyID(key); err == nil {
			return key, path, nil
		}
	}
	_, key, _, err = auth.NewKey()
	if err != nil {
		return "", "", err
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("write dev api key: %w", err)
	}
	return key, path, nil
}

func ensureDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return fmt.Errorf("check database: %w", err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// runOnce runs a one-shot subcommand of a service binary and waits for it.
func runOnce(ctx context.Context, opts Options, env []string, svc string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(opts.BinDir, svc), args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", svc, strings.Join(args, " "), err, out)
	}
	return nil
}

func portOf(addr string) string {
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		return addr[i:]
	}
	return ":" + addr
}

// waitHealthy polls the gateway's /healthz until every service serves.
func waitHealthy(ctx context.Context, url string, exited <-chan string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("suite not healthy at %s: %w", url, ctx.Err())
		case name := <-exited:
			return fmt.Errorf("%s exited during start-up", name)
		case <-tick.C:
		}
	}
}

func printBanner(opts Options, gatewayURL, key, keyFile string) {
	fmt.Fprintf(opts.Out, `
Leadflow is running. Ctrl-C stops everything.

  REST gateway   %[1]s
  Health         %[1]s/healthz
  OpenAPI        %[1]s/openapi.json
  Demo form      POST %[1]s/v1/forms/demo:submit
`, gatewayURL)
	for i, svc := range Backends {
		fmt.Fprintf(opts.Out, "  gRPC %-9s 127.0.0.1:%d   metrics http://127.0.0.1:%d/metrics\n", svc, opts.FirstGRPCPort+i, opts.FirstMetricsPort+i)
	}
	fmt.Fprintf(opts.Out, "  gateway metrics          http://127.0.0.1:%d/metrics\n", opts.FirstMetricsPort+len(Backends))
	fmt.Fprintf(opts.Out, `
  Workspace      %s
  API key        %s
  (also in %s)

  curl -H "Authorization: Bearer $(cat %s)" %s/v1/leads
`, DemoWorkspace, key, keyFile, keyFile, gatewayURL)
}

// group supervises the long-running service processes.
type group struct {
	ctx    context.Context // Run's; once it ends, exits are expected
	out    io.Writer
	mu     sync.Mutex
	procs  []*process // in start order
	wg     sync.WaitGroup
	exited chan string
}

// process is one service process of the group.
type process struct {
	name, path string
	env        []string
	cmd        *exec.Cmd
	// killed marks an exit that Faults caused, which must not stop the suite.
	killed bool
	done   chan struct{} // closed once the process has exited and its output is read
}

func newGroup(ctx context.Context, out io.Writer) *group {
	return &group{ctx: ctx, out: out, exited: make(chan string, 16)}
}

// start launches one service with its output prefixed by its name.
func (g *group) start(path, name string, env []string) error {
	return g.launch(&process{name: name, path: path, env: env})
}

// launch starts p and watches it until it exits.
func (g *group) launch(p *process) error {
	cmd := exec.Command(p.path)
	cmd.Env = p.env
	// Own process group: Ctrl-C in the terminal reaches only us, and we stop
	// the services in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	g.mu.Lock()
	g.procs = slices.DeleteFunc(g.procs, func(q *process) bool { return q.name == p.name })
	g.procs = append(g.procs, p)
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			fmt.Fprintf(g.out, "%-9s | %s\n", p.name, sc.Text())
		}
		_ = cmd.Wait()
		g.mu.Lock()
		killed := p.killed
		g.mu.Unlock()
		if g.ctx.Err() == nil && !killed {
			g.exited <- p.name
		}
	}()
	return nil
}

// stop sends SIGTERM to every service (last started first) and waits up to
// timeout before killing what is left.
func (g *group) stop(timeout time.Duration) {
	g.mu.Lock()
	procs := slices.Clone(g.procs)
	g.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		_ = procs[i].cmd.Process.Signal(syscall.SIGTERM)
		// A process Faults froze would not act on SIGTERM until woken.
		_ = procs[i].cmd.Process.Signal(syscall.SIGCONT)
	}
	done := make(chan struct{})
	go func() { g.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(timeout):
		for _, p := range procs {
			_ = p.cmd.Process.Kill()
		}
		<-done
	}
}

// localPostgres is the PostgreSQL Run started, which Faults may crash and
// start again on the same data directory and port.
type localPostgres struct {
	opts    pglocal.Options
	mu      sync.Mutex
	cluster *pglocal.Cluster
	crashed bool // by Faults, and not started again
}

func (p *localPostgres) start(ctx context.Context) error {
	p.mu.Lock()
	opts := p.opts
	p.mu.Unlock()
	c, err := pglocal.Start(ctx, opts)
	if err != nil {
		return fmt.Errorf("start local PostgreSQL: %w", err)
	}
	p.mu.Lock()
	p.cluster, p.crashed = c, false
	p.opts.Port = c.Port() // a restart must come back where the services look
	p.mu.Unlock()
	return nil
}

func (p *localPostgres) current() *pglocal.Cluster {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cluster
}

// stop shuts the server down cleanly unless Faults crashed it.
func (p *localPostgres) stop(ctx context.Context, out io.Writer) {
	p.mu.Lock()
	c, crashed := p.cluster, p.crashed
	p.mu.Unlock()
	if crashed {
		return
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := c.Stop(stopCtx); err != nil {
		fmt.Fprintln(out, "stop PostgreSQL:", err)
	}
}

// seedDemo sets the demo workspace up through the gateway, the way a
// marketer and a sales manager would: the public form "demo" (a demo
// request, so submitters are hand-raisers), a sales team with one rep, and
// a routing policy that sends every lead to that team. Each step is skipped
// when a previous run already did it.
func seedDemo(ctx context.Context, opts Options, key string) error {
	gateway := "http://localhost" + portOf(opts.HTTPAddr)
	call := func(method, path string, body any) (int, []byte, error) {
		raw, _ := json.Marshal(body)
		req, err := http.NewRequestWithContext(ctx, method, gateway+path, bytes.NewReader(raw))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, out, nil
	}
	create := func(what, path string, body any) error {
		code, out, err := call(http.MethodPost, path, body)
		switch {
		case err != nil:
			return fmt.Errorf("seed %s: %w", what, err)
		case code == http.StatusOK, code == http.StatusConflict:
			return nil
		default:
			return fmt.Errorf("seed %s: HTTP %d: %s", what, code, out)
		}
	}

	if err := create("demo form", "/v1/forms?formId=demo", map[string]any{
		"displayName":        "Demo request",
		"source":             "web-form",
		"campaign":           "demo",
		"activityType":       "ACTIVITY_TYPE_DEMO_REQUEST",
		"consentPurpose":     "marketing",
		"consentText":        "I agree to be contacted about Leadflow.",
		"consentTextVersion": "v1",
		"allowedOrigins":     []string{gateway, strings.Replace(gateway, "localhost", "127.0.0.1", 1)},
		"thankYouUrl":        gateway + "/ui/thanks",
		"honeypotField":      "website",
	}); err != nil {
		return err
	}
	if err := create("sales team", "/v1/teams?teamId=sales", map[string]any{"displayName": "Sales"}); err != nil {
		return err
	}
	if err := create("sales rep", "/v1/owners?ownerId=demo-rep", map[string]any{
		"displayName": "Demo Rep", "teams": []string{"teams/sales"},
	}); err != nil {
		return err
	}

	code, out, err := call(http.MethodGet, "/v1/routingPolicy", nil)
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("seed routing policy: read: HTTP %d %v: %s", code, err, out)
	}
	var current struct {
		RoutingPolicy struct {
			FallbackTeam string `json:"fallbackTeam"`
			Etag         string `json:"etag"`
		} `json:"routingPolicy"`
	}
	if err := json.Unmarshal(out, &current); err != nil {
		return fmt.Errorf("seed routing policy: %w", err)
	}
	if current.RoutingPolicy.FallbackTeam != "" {
		return nil
	}
	code, out, err = call(http.MethodPatch, "/v1/routingPolicy?updateMask=fallback_team", map[string]any{
		"name": "routingPolicy", "fallbackTeam": "teams/sales", "etag": current.RoutingPolicy.Etag,
	})
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("seed routing policy: HTTP %d %v: %s", code, err, out)
	}
	return nil
}
