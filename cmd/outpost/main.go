// Command outpost is the Outpost registry server and its command-line
// client in one binary.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/outpost-registry/outpost/internal/cli"
)

func main() {
	if err := cli.Run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
