package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// CompareOptions configures a side-by-side run of Outpost, distribution
// and the sendfile file server.
type CompareOptions struct {
	OutpostBin      string
	DistributionBin string
	// SelfBin is this tool's executable; it runs the file server and the
	// profiled Outpost as child processes.
	SelfBin     string
	Size        string
	Seed        uint64
	Duration    time.Duration
	Concurrency []int
	// Workloads selects among pull, push, small, tags and sync.
	Workloads []string
	// WorkDir holds the run's temporary directory (one disk for all).
	WorkDir string
	Keep    bool
	// ProfileDir, when set, receives CPU and allocation profiles of
	// Outpost under the pull and small-request workloads.
	ProfileDir string
	Tags       int
	Restarts   int
	// Rounds repeats the workload matrix; ratios use the median round.
	Rounds       int
	PushSize     int64
	PushChunk    int64
	PushMaxBytes int64
	MaxOps       int64
	VerifyEvery  int64
	Password     string
	Stdout       io.Writer
	Stderr       io.Writer
}

// server is a started registry and its client side.
type server struct {
	proc   *proc
	target *Target
}

func (s *server) stop() error {
	s.target.close()
	if s.proc == nil {
		return nil
	}
	return s.proc.stop(15 * time.Second)
}

type comparison struct {
	o    CompareOptions
	root string
	ds   *Dataset
	em   *emitter
	live []*server
	// round is the current repetition, from 1.
	round int
}

func (c *comparison) logf(format string, args ...any) {
	_, _ = fmt.Fprintf(c.o.Stderr, "outpost-bench: "+format+"\n", args...)
}

// Compare runs the whole comparison and prints JSON lines on Stdout and a
// summary on Stderr.
func Compare(ctx context.Context, o CompareOptions) (err error) {
	spec, err := SpecFor(o.Size, o.Seed)
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp(o.WorkDir, "outpost-bench-")
	if err != nil {
		return err
	}
	c := &comparison{o: o, root: root, em: &emitter{w: o.Stdout}}
	defer func() {
		err = errors.Join(err, c.stopAll())
		if o.Keep {
			c.logf("kept %s", root)
		} else {
			c.logf("removing %s", root)
			err = errors.Join(err, os.RemoveAll(root))
		}
	}()
	for _, d := range []string{"logs", "outpost", "distribution"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o750); err != nil {
			return err
		}
	}
	start := time.Now()
	m := Machine{Workload: "machine", Cores: runtime.NumCPU(), CPUModel: cpuModel(), Kernel: kernel(),
		GoVersion: runtime.Version(), LoadAvgStart: loadAvg()}
	if m.LoadAvgStart > float64(m.Cores)/2 {
		c.logf("warning: load average %.2f on %d cores: other work is running and the figures will be noisy", m.LoadAvgStart, m.Cores)
	}
	if c.ds, err = Generate(filepath.Join(root, "dataset"), spec); err != nil {
		return fmt.Errorf("generate dataset: %w", err)
	}
	c.logf("dataset: %d images and %d indexes in %d repositories, %.0f MiB of layers, generated in %s under %s",
		len(c.ds.Images), len(c.ds.Indexes), spec.Repos, mb(c.ds.LayerBytes()), time.Since(start).Round(time.Millisecond), root)

	files, err := c.start(ctx, TargetSendfile, c.fileServerCmd, "")
	if err != nil {
		return err
	}
	outpost, err := c.start(ctx, TargetOutpost, c.outpostCmd(filepath.Join(root, "outpost")), c.o.Password)
	if err != nil {
		return err
	}
	registries := []*server{outpost}
	if o.DistributionBin != "" {
		dist, err := c.start(ctx, TargetDistribution, c.distributionCmd(filepath.Join(root, "distribution")), "")
		if err != nil {
			return err
		}
		registries = append(registries, dist)
	} else {
		c.logf("no --distribution-bin: measuring Outpost alone")
	}
	for _, s := range registries {
		if err := c.seed(ctx, s); err != nil {
			return err
		}
	}
	for c.round = 1; c.round <= max(o.Rounds, 1); c.round++ {
		if err := c.workloads(ctx, append([]*server{files}, registries...), registries); err != nil {
			return err
		}
	}
	c.round = 0
	if err := c.stopAll(); err != nil {
		return err
	}
	if c.o.ProfileDir != "" {
		if err := c.profile(ctx, filepath.Join(root, "outpost")); err != nil {
			return err
		}
	}
	if c.enabled("tags") && c.o.Tags > 0 {
		if err := c.startWithTags(ctx); err != nil {
			return err
		}
	}
	if c.enabled("sync") {
		if err := c.syncBench(ctx); err != nil {
			return fmt.Errorf("sync: %w", err)
		}
	}
	summarize(c.em, c.o.Stderr, c.o.Concurrency)
	m.LoadAvgEnd, m.Seconds = loadAvg(), round(time.Since(start).Seconds())
	m.Dataset = fmt.Sprintf("%d repositories x %d tags x %d layers, %.0f MiB, seed %d",
		spec.Repos, spec.Tags, spec.Layers, mb(c.ds.LayerBytes()), spec.Seed)
	c.em.line(m)
	c.logf("machine: %d cores (%s), load average %.2f at start, %.2f at end; %s", m.Cores, m.CPUModel, m.LoadAvgStart, m.LoadAvgEnd, time.Duration(m.Seconds*float64(time.Second)).Round(time.Second))
	return nil
}

func (c *comparison) enabled(w string) bool {
	if len(c.o.Workloads) == 0 {
		return true
	}
	for _, x := range c.o.Workloads {
		if x == w {
			return true
		}
	}
	return false
}

// command returns a server's binary, arguments and environment for addr.
type command func(addr string) (bin string, args, env []string, err error)

func (c *comparison) fileServerCmd(addr string) (string, []string, []string, error) {
	return c.o.SelfBin, []string{"fileserver", "--addr", addr, "--dir", c.ds.Dir}, nil, nil
}

func (c *comparison) outpostArgs(addr, data string) []string {
	return []string{"serve", "--addr", addr, "--data", data, "--log-level", "Warning", "--tls-mode", "off"}
}

func (c *comparison) outpostCmd(data string) command {
	return func(addr string) (string, []string, []string, error) {
		return c.o.OutpostBin, c.outpostArgs(addr, data), []string{"OUTPOST_ADMIN_PASSWORD=" + c.o.Password}, nil
	}
}

// distributionCmd configures distribution as its documentation suggests
// for a filesystem deployment, with the in-memory blob descriptor cache,
// and without an access log (Outpost at level Warning logs no requests
// either). It runs without authentication: htpasswd would bcrypt every
// request, so this is distribution's fastest setting.
func (c *comparison) distributionCmd(data string) command {
	return func(addr string) (string, []string, []string, error) {
		cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
  secret: outpost-bench-secret
`, data, addr)
		path := data + ".yml"
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			return "", nil, nil, err
		}
		return c.o.DistributionBin, []string{"serve", path}, nil, nil
	}
}

// launch starts a server on a free port and waits until it is ready.
func (c *comparison) launch(ctx context.Context, name string, cmd command, password string) (*server, readiness, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, readiness{}, err
	}
	bin, args, env, err := cmd(addr)
	if err != nil {
		return nil, readiness{}, err
	}
	p, err := startProc(name, bin, args, env, filepath.Join(c.root, "logs", name+".log"))
	if err != nil {
		return nil, readiness{}, err
	}
	user := ""
	if password != "" {
		user = "admin"
	}
	s := &server{proc: p, target: NewTarget(name, "http://"+addr, user, password, p.pid())}
	c.live = append(c.live, s)
	r, err := p.waitReady(ctx, s.target, 30*time.Second)
	return s, r, err
}

// start launches a server, then prints its start-to-ready times and its
// RSS one second after it became ready.
func (c *comparison) start(ctx context.Context, name string, cmd command, password string) (*server, error) {
	s, r, err := c.launch(ctx, name, cmd, password)
	if err != nil {
		return nil, err
	}
	time.Sleep(time.Second)
	rss, err := procStatusMB(s.target.PID, "VmRSS")
	if err != nil {
		return nil, err
	}
	c.em.result(Result{Workload: WorkloadStart, Target: name, ListenMS: ms(r.listen), ReadyMS: ms(r.ready), RSSMB: rss,
		Note: "empty store; rss_mb is idle RSS 1 s after ready"})
	return s, nil
}

func (c *comparison) stopAll() error {
	var errs []error
	for _, s := range c.live {
		errs = append(errs, s.stop())
	}
	c.live = nil
	return errors.Join(errs...)
}

func (c *comparison) seed(ctx context.Context, s *server) error {
	start := time.Now()
	if err := s.target.Seed(ctx, c.ds, 4); err != nil {
		return err
	}
	d := time.Since(start)
	c.em.result(Result{Workload: WorkloadSeed, Target: s.target.Name, Concurrency: 4,
		MBPerS: round(mb(c.ds.LayerBytes()) / d.Seconds()), Seconds: round(d.Seconds()), Bytes: c.ds.LayerBytes()})
	return nil
}

// measure runs one workload against s, with the server's peak RSS and
// CPU time and the tool's own CPU time.
func (c *comparison) measure(ctx context.Context, s *server, workload string, rc RunConfig, newOp func(int) opFunc) Result {
	pid := s.target.PID
	var note string
	var cpu0 time.Duration
	if pid > 0 {
		if err := resetPeakRSS(pid); err != nil {
			note = "peak_rss_mb is the process lifetime peak: " + err.Error()
		}
		cpu0, _ = procCPU(pid)
	}
	self0 := selfCPU()
	r := run(ctx, rc, newOp).result(workload, s.target.Name, rc.Concurrency)
	if c.o.Rounds > 1 {
		r.Round = c.round
	}
	r.ClientCPU = round((selfCPU() - self0).Seconds())
	if cpu1, err := procCPU(pid); pid > 0 && err == nil {
		r.ServerCPU = round((cpu1 - cpu0).Seconds())
		r.PeakRSSMB, _ = procStatusMB(pid, "VmHWM")
		switch {
		case workload == WorkloadManifestHead || workload == WorkloadManifestGet:
			if ok := r.Requests - r.Errors; ok > 0 {
				r.ServerCPUPerReq = round(r.ServerCPU * 1e6 / float64(ok))
			}
		case r.Bytes > 0:
			r.ServerCPUPerGiB = round(r.ServerCPU / (float64(r.Bytes) / (1 << 30)))
		}
		if r.Seconds > 0 {
			r.MachineUse = round((r.ServerCPU + r.ClientCPU) / (r.Seconds * float64(runtime.NumCPU())))
		}
	}
	if note != "" {
		r.Note = strings.TrimSuffix(note+"; "+r.Note, "; ")
	}
	s.target.close()
	c.em.result(r)
	c.logf("r%d %-16s %-16s c=%-3d %9.1f MB/s %9.0f req/s p50 %7.2f ms p99 %7.2f ms errors %d",
		c.round, workload, s.target.Name, rc.Concurrency, r.MBPerS, r.ReqPerS, r.P50ms, r.P99ms, r.Errors)
	return r
}

func (c *comparison) rc(conc int, maxOps int64) RunConfig {
	return RunConfig{Concurrency: conc, Duration: c.o.Duration, MaxOps: min(maxOps, c.o.MaxOps)}
}

// workloads runs each enabled workload at each concurrency, alternating
// targets so that a disturbance on the machine spreads over all of them.
// pullers serve the pull workload; registries also take pushes and
// manifest requests.
func (c *comparison) workloads(ctx context.Context, pullers, registries []*server) error {
	if c.enabled("pull") {
		for _, conc := range c.o.Concurrency {
			for _, s := range pullers {
				p := &puller{t: s.target, ds: c.ds, verifyEvery: c.o.VerifyEvery}
				c.measure(ctx, s, WorkloadPull, c.rc(conc, c.o.MaxOps), p.newOp(conc))
			}
		}
	}
	if c.enabled("push") {
		src, err := newPushSource(c.o.Seed, c.o.PushSize)
		if err != nil {
			return err
		}
		for _, mode := range []struct {
			name  string
			chunk int64
		}{{WorkloadPushMonolith, 0}, {WorkloadPushChunked, c.o.PushChunk}} {
			for _, conc := range c.o.Concurrency {
				for _, s := range registries {
					repo := fmt.Sprintf("bench/%s-c%d-r%d", mode.name, conc, c.round)
					c.measure(ctx, s, mode.name, c.rc(conc, max(c.o.PushMaxBytes/c.o.PushSize, 1)), pushOp(s.target, src, repo, mode.chunk))
				}
			}
		}
	}
	if c.enabled("small") {
		for _, w := range []struct{ name, method string }{{WorkloadManifestHead, "HEAD"}, {WorkloadManifestGet, "GET"}} {
			for _, conc := range c.o.Concurrency {
				for _, s := range registries {
					c.measure(ctx, s, w.name, c.rc(conc, c.o.MaxOps), manifestProbe(s.target, c.ds, w.method, c.o.VerifyEvery))
				}
			}
		}
	}
	return ctx.Err()
}
