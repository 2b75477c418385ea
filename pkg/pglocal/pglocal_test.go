package pglocal

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDir returns a temporary directory that, when running as root, the
// postgres user can traverse (t.TempDir's parent is private to its owner).
func testDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if os.Geteuid() == 0 {
		for _, p := range []string{d, filepath.Dir(d)} {
			if err := os.Chmod(p, 0o711); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d
}

func startCluster(t *testing.T, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if errors.Is(err, ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return c
}

func stopCluster(t *testing.T, c *Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func exec1(t *testing.T, c *Cluster, sql string, dest ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	if len(dest) == 0 {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return
	}
	if err := conn.QueryRow(ctx, sql).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestStartRestartKeepsData(t *testing.T) {
	dataDir := filepath.Join(testDir(t), "pg", "data")
	c := startCluster(t, Options{DataDir: dataDir})
	if c.Port() == 0 || c.DataDir() != dataDir {
		t.Fatalf("Port() = %d, DataDir() = %q", c.Port(), c.DataDir())
	}
	var one int
	exec1(t, c, "SELECT 1", &one)
	if one != 1 {
		t.Fatalf("SELECT 1 = %d", one)
	}
	exec1(t, c, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
	stopCluster(t, c)
	select {
	case <-c.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if err := c.Stop(context.Background()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	c2 := startCluster(t, Options{DataDir: dataDir})
	var v string
	exec1(t, c2, "SELECT v FROM kept", &v)
	if v != "still here" {
		t.Fatalf("after restart got %q", v)
	}
	if _, err := os.Stat(dataDir + ".log"); err != nil {
		t.Fatalf("default log file: %v", err)
	}
}

// TestCrashKeepsCommittedData crashes a server with a transaction open: the
// restart runs crash recovery, keeps what was committed and drops the rest.
func TestCrashKeepsCommittedData(t *testing.T) {
	dataDir := filepath.Join(testDir(t), "data")
	c := startCluster(t, Options{DataDir: dataDir, Fsync: true})
	exec1(t, c, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('committed')")
	ctx := context.Background()
	open, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	tx, err := open.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO kept VALUES ('in flight')"); err != nil {
		t.Fatal(err)
	}

	crashCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Crash(crashCtx); err != nil {
		t.Fatalf("Crash: %v", err)
	}
	if err := tx.Commit(ctx); err == nil {
		t.Fatal("a transaction open across the crash committed")
	}
	if err := c.Stop(ctx); err == nil {
		t.Fatal("Stop after Crash reported no error")
	}

	c2 := startCluster(t, Options{DataDir: dataDir, Fsync: true})
	var rows string
	exec1(t, c2, "SELECT string_agg(v, ',') FROM kept", &rows)
	if rows != "committed" {
		t.Fatalf("after crash recovery kept = %q, want only the committed row", rows)
	}
	if !strings.Contains(tail(dataDir+".log", 50), "not properly shut down") {
		t.Errorf("the restart ran no crash recovery; log:\n%s", tail(dataDir+".log", 20))
	}
}

func TestStartReplacesStalePIDFile(t *testing.T) {
	dataDir := filepath.Join(testDir(t), "data")
	c := startCluster(t, Options{DataDir: dataDir})
	stopCluster(t, c)

	// After a container restart the old PID often belongs to an unrelated live
	// process; PostgreSQL alone would refuse to start then.
	cred, err := serverCredential()
	if err != nil {
		t.Fatal(err)
	}
	other := exec.Command("sleep", "60")
	other.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	pidFile := filepath.Join(dataDir, "postmaster.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(other.Process.Pid)+"\n"+dataDir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c2 := startCluster(t, Options{DataDir: dataDir})
	var one int
	exec1(t, c2, "SELECT 1", &one)
}

func TestStartRefusesRunningServer(t *testing.T) {
	dataDir := filepath.Join(testDir(t), "data")
	startCluster(t, Options{DataDir: dataDir})
	_, err := Start(context.Background(), Options{DataDir: dataDir})
	if !errors.Is(err, ErrAlreadyRunning) {
		t.Fatalf("second Start on the same data dir: got %v, want ErrAlreadyRunning", err)
	}
}

func TestFindBinariesNotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	old := binGlob
	binGlob = filepath.Join(t.TempDir(), "*", "bin")
	t.Cleanup(func() { binGlob = old })

	_, err := Start(context.Background(), Options{DataDir: filepath.Join(t.TempDir(), "data")})
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("got %v, want ErrNotInstalled", err)
	}
}

func TestArgs(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		wantInitdb []string
		wantServer []string
		notServer  []string
	}{
		{
			name:       "throwaway",
			opts:       Options{DataDir: "/d", ExtraConfig: map[string]string{"max_connections": "50", "work_mem": "8MB"}},
			wantInitdb: []string{"-N", "--no-locale", "trust"},
			wantServer: []string{"fsync=off", "synchronous_commit=off", "full_page_writes=off", "port=5555",
				"listen_addresses=127.0.0.1", "unix_socket_directories=", "max_connections=50", "work_mem=8MB"},
			notServer: []string{"max_connections=200"},
		},
		{
			name:       "durable",
			opts:       Options{DataDir: "/d", Fsync: true},
			wantServer: []string{"port=5555", "max_connections=200"},
			notServer:  []string{"fsync=off", "synchronous_commit=off", "full_page_writes=off"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			initArgs := initdbArgs(tt.opts.DataDir, tt.opts.Fsync)
			for _, w := range tt.wantInitdb {
				if !slices.Contains(initArgs, w) {
					t.Errorf("initdb args %q lack %q", initArgs, w)
				}
			}
			if tt.opts.Fsync && slices.Contains(initArgs, "-N") {
				t.Errorf("durable initdb args %q contain -N", initArgs)
			}
			args := serverArgs(tt.opts, 5555)
			for _, w := range tt.wantServer {
				if !slices.Contains(args, w) {
					t.Errorf("server args %q lack %q", args, w)
				}
			}
			for _, w := range tt.notServer {
				if slices.Contains(args, w) {
					t.Errorf("server args %q contain %q", args, w)
				}
			}
		})
	}
}

func TestStartRefusesNonEmptyDirWithoutCluster(t *testing.T) {
	dataDir := filepath.Join(testDir(t), "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Options{DataDir: dataDir})
	if errors.Is(err, ErrNotInstalled) {
		t.Skip(err)
	}
	if err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("got %v, want a not-empty error", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "notes.txt")); err != nil {
		t.Fatalf("the caller's file was touched: %v", err)
	}
}
