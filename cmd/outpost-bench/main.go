// Command outpost-bench is Outpost's load tool: it seeds registries with a
// reproducible synthetic dataset and measures pulls, pushes, manifest
// requests, memory and start time against the distribution registry and
// the loopback sendfile limit (see docs/benchmarks.md).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/outpost-registry/outpost/internal/bench"
	"github.com/outpost-registry/outpost/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := bench.Main(ctx, cli.Run, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
