package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
)

// Outpost runs Outpost's command line (cli.Run) with args. The load tool
// is handed it by its main, so that it stays a client of the server and
// never imports the command tree.
type Outpost func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// ServeProfiled runs Outpost's own command line (outpost, the same entry
// point as bin/outpost) inside this process with the CPU profiler on. On SIGTERM
// the server stops gracefully and the CPU profile and the allocation
// profile (every allocation since start, sampled) are written. Outpost
// has no profiling endpoint of its own; this gives the same code under
// the profiler without one.
//
// args: --cpuprofile FILE --memprofile FILE -- serve [serve flags].
func ServeProfiled(ctx context.Context, outpost Outpost, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve-profiled", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cpuPath := fs.String("cpuprofile", "", "write the CPU profile to this file")
	memPath := fs.String("memprofile", "", "write the allocation profile to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuPath == "" || *memPath == "" {
		return errors.New("serve-profiled: --cpuprofile and --memprofile are required")
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	cpu, err := os.Create(*cpuPath)
	if err != nil {
		return err
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		_ = cpu.Close()
		return err
	}
	runErr := outpost(ctx, fs.Args(), stdout, stderr)
	pprof.StopCPUProfile()
	errs := []error{runErr, cpu.Close()}
	mem, err := os.Create(*memPath)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	runtime.GC()
	errs = append(errs, pprof.Lookup("allocs").WriteTo(mem, 0), mem.Close())
	return errors.Join(errs...)
}

// profile runs Outpost under the profiler (ServeProfiled in a child
// process) on the data of the main run: once with the pull workload and
// once with HEAD and GET of manifests, at the highest concurrency, and
// once with monolithic pushes from 8 clients.
func (c *comparison) profile(ctx context.Context, data string) error {
	if err := os.MkdirAll(c.o.ProfileDir, 0o750); err != nil {
		return err
	}
	conc := slices.Max(c.o.Concurrency)
	const name = TargetOutpost + "-profiled"
	for _, p := range []struct {
		label string
		run   func(s *server)
	}{
		{"pull", func(s *server) {
			pl := &puller{t: s.target, ds: c.ds, verifyEvery: c.o.VerifyEvery}
			c.measure(ctx, s, WorkloadPull, c.rc(conc, c.o.MaxOps), pl.newOp(conc))
		}},
		{"small", func(s *server) {
			c.measure(ctx, s, WorkloadManifestHead, c.rc(conc, c.o.MaxOps), manifestProbe(s.target, c.ds, "HEAD", c.o.VerifyEvery))
			c.measure(ctx, s, WorkloadManifestGet, c.rc(conc, c.o.MaxOps), manifestProbe(s.target, c.ds, "GET", c.o.VerifyEvery))
		}},
		{"push", func(s *server) {
			src, err := newPushSource(c.o.Seed, c.o.PushSize)
			if err != nil {
				c.logf("push profile: %v", err)
				return
			}
			c.measure(ctx, s, WorkloadPushMonolith, c.rc(8, max(c.o.PushMaxBytes/c.o.PushSize, 1)), pushOp(s.target, src, "bench/push-profiled", 0))
		}},
	} {
		cpu := filepath.Join(c.o.ProfileDir, p.label+".cpu.pprof")
		mem := filepath.Join(c.o.ProfileDir, p.label+".allocs.pprof")
		cmd := func(addr string) (string, []string, []string, error) {
			args := append([]string{"serve-profiled", "--cpuprofile", cpu, "--memprofile", mem, "--"}, c.outpostArgs(addr, data)...)
			return c.o.SelfBin, args, []string{"OUTPOST_ADMIN_PASSWORD=" + c.o.Password}, nil
		}
		s, _, err := c.launch(ctx, name, cmd, c.o.Password)
		if err != nil {
			return err
		}
		p.run(s)
		if err := c.stopAll(); err != nil {
			return err
		}
		if err := errors.Join(checkProfile(cpu), checkProfile(mem)); err != nil {
			return err
		}
		c.logf("profiles of %s: %s %s", p.label, cpu, mem)
	}
	return nil
}

// checkProfile reports whether a profile file was written.
func checkProfile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return fmt.Errorf("profile %s is empty", path)
	}
	return nil
}
