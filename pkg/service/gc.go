package service

import (
	"os"
	"runtime/debug"
)

// DefaultGCPercent is the GOGC the services run with unless GOGC is set.
// Their live heap is small (tens of MiB), so Go's default of 100 starts a
// collection every few MiB allocated: a bulk import spent about a third of
// its CPU in the collector (its benchmark: about 20,000 leads/s with 100,
// 23,000 with 400, on the same machine and minute). GOMEMLIMIT, which the deploy manifests set below the container's
// memory limit, still bounds the heap: near it the collector runs as often as
// it must, whatever GOGC says.
const DefaultGCPercent = 400

// TuneGC applies DefaultGCPercent unless the environment sets GOGC. Run
// calls it first; a benchmark that hosts a service's server in-process calls
// it too, to measure what the binaries run.
func TuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(DefaultGCPercent)
	}
}
