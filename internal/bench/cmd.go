package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

const usage = `outpost-bench measures Outpost against the CNCF distribution registry.

Usage:
  outpost-bench compare [flags]   start Outpost, distribution and a sendfile file server, seed them, run every workload
  outpost-bench run --target NAME=URL [flags]   run the workloads against registries that are already running
  outpost-bench fleet --target URL [--sites N --interval D --duration D]   simulate a fleet of connected registries heartbeating and polling the change feed
  outpost-bench fileserver --addr ADDR --dir DIR   serve a generated dataset (started by compare)
  outpost-bench serve-profiled --cpuprofile F --memprofile F -- serve [flags]   Outpost under the profiler (started by compare)

JSON lines go to stdout, progress and the summary table to stderr.
Run "outpost-bench compare -h" for the flags.
`

// Main runs the tool with args (without the program name) and returns the
// process exit code; outpost is the command line serve-profiled runs.
func Main(ctx context.Context, outpost Outpost, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		_, _ = fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "compare":
		err = compareCmd(ctx, args[1:], stdout, stderr)
	case "run":
		err = runCmd(ctx, args[1:], stdout, stderr)
	case "fleet":
		err = fleetCmd(ctx, args[1:], stdout, stderr)
	case "fileserver":
		err = fileServerCmd(ctx, args[1:], stderr)
	case "serve-profiled":
		err = ServeProfiled(ctx, outpost, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		_, _ = fmt.Fprint(stdout, usage)
		return 0
	default:
		_, _ = fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		_, _ = fmt.Fprintln(stderr, "outpost-bench:", err)
		return 1
	}
	return 0
}

// common holds the flags of compare and run.
type common struct {
	size        string
	seed        uint64
	duration    time.Duration
	concurrency string
	workloads   string
	pushSize    sizeFlag
	pushChunk   sizeFlag
	pushMax     sizeFlag
	maxOps      int64
	verifyEvery int64
	password    string
}

func (c *common) bind(fs *flag.FlagSet, workloads string) {
	c.pushSize, c.pushChunk, c.pushMax = 4*mib, mib, 512*mib
	fs.StringVar(&c.size, "size", "default", "dataset: default (20 repositories x 3 tags x 4 layers, 1 GiB) or small (2 x 2 x 2 x 1 MiB)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the synthetic dataset")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "duration of each workload run")
	fs.StringVar(&c.concurrency, "concurrency", "1,8,32", "comma-separated client counts")
	fs.StringVar(&c.workloads, "workloads", workloads, "comma-separated workloads to run")
	fs.Var(&c.pushSize, "push-size", "size of each pushed blob (e.g. 4MiB)")
	fs.Var(&c.pushChunk, "push-chunk", "chunk size of chunked pushes")
	fs.Var(&c.pushMax, "push-max", "bytes pushed at most per push run")
	fs.Int64Var(&c.maxOps, "max-ops", 2_000_000, "operations at most per run")
	fs.Int64Var(&c.verifyEvery, "verify-every", 10, "hash one pulled blob in N while reading it (0: never; others are checked by length)")
	fs.StringVar(&c.password, "password", "outpost-bench-password", "admin password given to Outpost (12 characters at least)")
}

func (c *common) parse() ([]int, []string, error) {
	var concs []int
	for f := range strings.SplitSeq(c.concurrency, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1024 {
			return nil, nil, fmt.Errorf("bad --concurrency %q", c.concurrency)
		}
		concs = append(concs, n)
	}
	var wls []string
	for w := range strings.SplitSeq(c.workloads, ",") {
		switch w = strings.TrimSpace(w); w {
		case "pull", "push", "small", "tags", "sync":
			wls = append(wls, w)
		default:
			return nil, nil, fmt.Errorf("unknown workload %q (want pull, push, small, tags, sync)", w)
		}
	}
	if c.duration <= 0 || c.duration > 10*time.Minute {
		return nil, nil, fmt.Errorf("--duration %s is out of range (0, 10m]", c.duration)
	}
	if c.pushChunk <= 0 || c.pushSize <= pushSuffixLen {
		return nil, nil, errors.New("--push-size and --push-chunk must be positive")
	}
	return concs, wls, nil
}

func compareCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.bind(fs, "pull,push,small,tags,sync")
	o := CompareOptions{Stdout: stdout, Stderr: stderr}
	fs.StringVar(&o.OutpostBin, "outpost-bin", "bin/outpost", "Outpost binary")
	fs.StringVar(&o.DistributionBin, "distribution-bin", ".tools/bin/registry", "distribution registry binary (empty: measure Outpost alone)")
	fs.StringVar(&o.WorkDir, "workdir", "", "parent of the run's temporary directory (default: the system temporary directory)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary directory (data, logs)")
	fs.StringVar(&o.ProfileDir, "profile-dir", "", "write CPU and allocation profiles of Outpost under the pull and small-request workloads here")
	fs.IntVar(&o.Tags, "tags", 10000, "tags in the store for the start-to-ready and one-moved-tag sync measurements (0: skip)")
	fs.IntVar(&o.Restarts, "restarts", 5, "restarts timed for the start-to-ready measurement (median)")
	fs.IntVar(&o.Rounds, "rounds", 1, "repeat the workload matrix; ratios use each figure's median round")
	if err := fs.Parse(args); err != nil {
		return err
	}
	concs, wls, err := c.parse()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	for _, b := range []string{o.OutpostBin, o.DistributionBin} {
		if b == "" && b != o.OutpostBin {
			continue
		}
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("binary: %w", err)
		}
	}
	o.SelfBin, o.Size, o.Seed, o.Duration, o.Concurrency, o.Workloads = self, c.size, c.seed, c.duration, concs, wls
	o.PushSize, o.PushChunk, o.PushMaxBytes = int64(c.pushSize), int64(c.pushChunk), int64(c.pushMax)
	o.MaxOps, o.VerifyEvery, o.Password = c.maxOps, c.verifyEvery, c.password
	if o.Rounds < 1 || o.Rounds > 10 || o.Restarts < 1 || o.Restarts > 50 || o.Tags < 0 || o.Tags > 100_000 {
		return errors.New("--rounds must be in 1..10, --restarts in 1..50 and --tags in 0..100000")
	}
	return Compare(ctx, o)
}

func fileServerCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("fileserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:0", "listening address")
	dir := fs.String("dir", "", "dataset directory written by compare")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return ServeFiles(ctx, *addr, *dir)
}

// sizeFlag is a byte size such as 4MiB, 512KiB or 1GiB.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if rest, ok := strings.CutSuffix(v, u.suffix); ok {
			v, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("bad size %q (want e.g. 4MiB)", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}
