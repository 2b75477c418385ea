// Command leadflow is the operator's command line for Leadflow. Today it runs
// the whole suite locally (`leadflow dev`); later it grows admin commands.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/leadflow/leadflow/cmd/leadflow/internal/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCmd().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "leadflow:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "leadflow",
		Short:         "Leadflow, the self-hosted lead-management engine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newDevCmd())
	return root
}

func newDevCmd() *cobra.Command {
	opts := devstack.Options{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run the whole suite locally: PostgreSQL, migrations, demo data, every service and the gateway",
		Long: `Runs the whole suite on this machine until Ctrl-C.

Without DATABASE_URL it starts a PostgreSQL server from the machine's own
binaries, with its data under <data-dir>/pg (kept across runs). It migrates
every service, seeds a "demo" workspace with an API key (also written to
<data-dir>/dev-api-key) and a public form "demo", then starts each service as
its own process talking gRPC over loopback, and the REST gateway.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.DatabaseURL = os.Getenv("DATABASE_URL")
			return devstack.Run(cmd.Context(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.DataDir, "data-dir", ".data", "where the local PostgreSQL and the dev API key live")
	f.StringVar(&opts.BinDir, "bin-dir", "", "where the service binaries are (default: next to this binary)")
	f.IntVar(&opts.PostgresPort, "postgres-port", 55432, "port of the local PostgreSQL (without DATABASE_URL)")
	f.StringVar(&opts.HTTPAddr, "http-addr", ":8080", "address of the REST gateway")
	f.IntVar(&opts.FirstGRPCPort, "grpc-port", 9090, "first of the consecutive gRPC ports of the services")
	f.IntVar(&opts.FirstMetricsPort, "metrics-port", 9190, "first of the consecutive Prometheus /metrics ports (services, then gateway)")
	return cmd
}
