package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// targetsFlag collects --target NAME=URL[@PID] values.
type targetsFlag []*Target

func (t *targetsFlag) String() string { return fmt.Sprint(len(*t)) }

func (t *targetsFlag) Set(v string) error {
	name, u, ok := strings.Cut(v, "=")
	if !ok || name == "" || !strings.HasPrefix(u, "http://") {
		return fmt.Errorf("bad --target %q (want NAME=http://127.0.0.1:PORT)", v)
	}
	*t = append(*t, NewTarget(name, strings.TrimSuffix(u, "/"), "", "", 0))
	return nil
}

// runCmd runs the workloads against registries that are already running,
// seeding them first unless --no-seed. Without a process ID there are no
// RSS or CPU figures.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.bind(fs, "pull,push,small")
	var targets targetsFlag
	fs.Var(&targets, "target", "registry to measure, NAME=http://127.0.0.1:PORT (repeatable)")
	user := fs.String("user", "admin", "user name sent with Basic auth on every request (empty: none)")
	noSeed := fs.Bool("no-seed", false, "do not push the dataset first (it must already be there)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	concs, wls, err := c.parse()
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return errors.New("at least one --target is required")
	}
	spec, err := SpecFor(c.size, c.seed)
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "outpost-bench-")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, os.RemoveAll(root)) }()
	o := CompareOptions{
		Seed: c.seed, Duration: c.duration, Concurrency: concs, Workloads: wls,
		PushSize: int64(c.pushSize), PushChunk: int64(c.pushChunk), PushMaxBytes: int64(c.pushMax),
		MaxOps: c.maxOps, VerifyEvery: c.verifyEvery, Stdout: stdout, Stderr: stderr,
	}
	cmp := &comparison{o: o, root: root, em: &emitter{w: stdout}}
	if cmp.ds, err = Generate(filepath.Join(root, "dataset"), spec); err != nil {
		return err
	}
	var servers []*server
	for _, t := range targets {
		if *user != "" {
			t.User, t.Pass = *user, c.password
		}
		s := &server{target: t}
		servers = append(servers, s)
		if !*noSeed {
			if err := cmp.seed(ctx, s); err != nil {
				return err
			}
		}
	}
	start := time.Now()
	if err := cmp.workloads(ctx, servers, servers); err != nil {
		return err
	}
	cmp.logf("done in %s", time.Since(start).Round(time.Millisecond))
	summarize(cmp.em, stderr, concs)
	return nil
}
