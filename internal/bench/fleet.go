package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outpost-registry/outpost/internal/protocol"
)

// fleetOptions configure `outpost-bench fleet`.
type fleetOptions struct {
	target   string
	warm     []string
	user     string
	password string
	sites    int
	interval time.Duration
	duration time.Duration
	prefix   string
	repo     string
	pids     []int
	setupPar int
}

// FleetReport is the outcome of a fleet load run (one JSON line).
type FleetReport struct {
	Sites           int     `json:"sites"`
	IntervalS       float64 `json:"interval_s"`
	DurationS       float64 `json:"duration_s"`
	Heartbeats      int     `json:"heartbeats"`
	FeedPolls       int     `json:"feed_polls"`
	Errors          int     `json:"errors"`
	FirstError      string  `json:"first_error,omitempty"`
	HeartbeatP50ms  float64 `json:"heartbeat_p50_ms"`
	HeartbeatP99ms  float64 `json:"heartbeat_p99_ms"`
	FeedP50ms       float64 `json:"feed_p50_ms"`
	FeedP99ms       float64 `json:"feed_p99_ms"`
	ServerCPUs      float64 `json:"server_cpu_s,omitempty"`
	CPUPerSiteMs    float64 `json:"server_cpu_ms_per_site_per_min,omitempty"`
	SetupS          float64 `json:"setup_s"`
	RequestsPerSecS float64 `json:"requests_per_s"`
}

// fleetSite is one simulated connected registry.
type fleetSite struct {
	name, user, pass, activation string
}

// fleetCmd simulates a fleet of connected registries against a root:
// each is created and activated through the management API, then
// heartbeats and polls its repository's change feed every interval (the
// sites spread evenly over it) for the run's duration, as an edge does.
func fleetCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o fleetOptions
	var warm, pids string
	fs.StringVar(&o.target, "target", "", "the root (or its balancer), http://HOST:PORT")
	fs.StringVar(&warm, "warm", "", "comma-separated replica URLs each site's credential is first checked on (a replica verifies a password once, then remembers it)")
	fs.StringVar(&o.user, "user", "admin", "the admin user")
	fs.StringVar(&o.password, "password", "outpost-bench-password", "the admin password")
	fs.IntVar(&o.sites, "sites", 1000, "simulated connected registries")
	fs.DurationVar(&o.interval, "interval", 30*time.Second, "heartbeat and change feed interval of each site")
	fs.DurationVar(&o.duration, "duration", 2*time.Minute, "measured duration")
	fs.StringVar(&o.prefix, "prefix", "load-", "name prefix of the simulated sites")
	fs.StringVar(&o.repo, "repository", "fleet/app", "the repository every site syncs")
	fs.StringVar(&pids, "pids", "", "comma-separated server process IDs whose CPU time is reported")
	fs.IntVar(&o.setupPar, "setup-concurrency", 8, "sites created and activated at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.target == "" || o.sites < 1 || o.interval <= 0 || o.duration <= 0 {
		return errors.New("fleet: --target, and positive --sites, --interval and --duration, are required")
	}
	if warm != "" {
		o.warm = strings.Split(warm, ",")
	}
	for _, p := range strings.Split(pids, ",") {
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("fleet: --pids %q: %w", p, err)
		}
		o.pids = append(o.pids, n)
	}
	rep, err := runFleet(ctx, o, stderr)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(rep)
}

// fleetClient sends JSON requests with Basic credentials.
type fleetClient struct{ http *http.Client }

func (c fleetClient) do(ctx context.Context, method, url, user, pass string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func runFleet(ctx context.Context, o fleetOptions, progress io.Writer) (FleetReport, error) {
	c := fleetClient{&http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	rep := FleetReport{Sites: o.sites, IntervalS: o.interval.Seconds(), DurationS: o.duration.Seconds()}
	t0 := time.Now()
	sites, err := setupFleet(ctx, c, o, progress)
	if err != nil {
		return rep, err
	}
	rep.SetupS = time.Since(t0).Seconds()
	_, _ = fmt.Fprintf(progress, "fleet: %d sites created and activated in %.1f s; measuring for %s\n", len(sites), rep.SetupS, o.duration)

	cpu0 := serverCPU(o.pids)
	var (
		mu           sync.Mutex
		hbLat, fdLat []time.Duration
		errs         atomic.Int64
		firstErr     atomic.Value
	)
	fail := func(err error) {
		if errs.Add(1) == 1 {
			firstErr.Store(err.Error())
		}
	}
	mctx, cancel := context.WithTimeout(ctx, o.duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i, s := range sites {
		wg.Go(func() {
			// Sites spread evenly over the interval, as a fleet's do.
			offset := time.Duration(int64(o.interval) * int64(i) / int64(len(sites)))
			next := start.Add(offset)
			since := uint64(0)
			for {
				select {
				case <-mctx.Done():
					return
				case <-time.After(time.Until(next)):
				}
				next = next.Add(o.interval)
				hb := protocol.Heartbeat{ActivationID: s.activation, ConnectionState: protocol.StateOnline, Version: "outpost-bench", IntervalSeconds: int(o.interval.Seconds())}
				t := time.Now()
				err := c.do(mctx, http.MethodPost, o.target+"/api/v1/gateway/"+s.name+"/heartbeat", s.user, s.pass, hb, nil)
				d := time.Since(t)
				if mctx.Err() != nil {
					return
				}
				if err != nil {
					fail(err)
				} else {
					mu.Lock()
					hbLat = append(hbLat, d)
					mu.Unlock()
				}
				var ch protocol.ChangesResponse
				t = time.Now()
				err = c.do(mctx, http.MethodGet, fmt.Sprintf("%s/api/v1/changes?repository=%s&since=%d&n=1000", o.target, o.repo, since), s.user, s.pass, nil, &ch)
				d = time.Since(t)
				if mctx.Err() != nil {
					return
				}
				if err != nil {
					fail(err)
					continue
				}
				since = ch.Next
				mu.Lock()
				fdLat = append(fdLat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if cpu0 >= 0 {
		if cpu1 := serverCPU(o.pids); cpu1 >= 0 {
			rep.ServerCPUs = (cpu1 - cpu0).Seconds()
			rep.CPUPerSiteMs = rep.ServerCPUs * 1000 / float64(len(sites)) / elapsed.Minutes()
		}
	}
	slices.Sort(hbLat)
	slices.Sort(fdLat)
	rep.Heartbeats, rep.FeedPolls, rep.Errors = len(hbLat), len(fdLat), int(errs.Load())
	if e, ok := firstErr.Load().(string); ok {
		rep.FirstError = e
	}
	rep.HeartbeatP50ms, rep.HeartbeatP99ms = percentile(hbLat, 50), percentile(hbLat, 99)
	rep.FeedP50ms, rep.FeedP99ms = percentile(fdLat, 50), percentile(fdLat, 99)
	rep.RequestsPerSecS = float64(len(hbLat)+len(fdLat)) / elapsed.Seconds()
	_, _ = fmt.Fprintf(progress, "fleet: %d heartbeats (p50 %.1f ms, p99 %.1f ms), %d change feed polls (p50 %.1f ms, p99 %.1f ms), %d errors, server CPU %.1f s\n",
		rep.Heartbeats, rep.HeartbeatP50ms, rep.HeartbeatP99ms, rep.FeedPolls, rep.FeedP50ms, rep.FeedP99ms, rep.Errors, rep.ServerCPUs)
	return rep, nil
}

// setupFleet creates (or reuses) the sites, generates their sync token
// passwords, activates them, and checks each credential on every --warm
// replica once.
func setupFleet(ctx context.Context, c fleetClient, o fleetOptions, progress io.Writer) ([]fleetSite, error) {
	sites := make([]fleetSite, o.sites)
	errs := make([]error, o.sites)
	var done atomic.Int64
	sem := make(chan struct{}, max(o.setupPar, 1))
	var wg sync.WaitGroup
	for i := range sites {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("%s%05d", o.prefix, i)
			err := c.do(ctx, http.MethodPost, o.target+"/api/v1/connected-registries", o.user, o.password,
				protocol.CreateRequest{Name: name, Repositories: []string{o.repo}}, nil)
			if err != nil && !strings.Contains(err.Error(), "409") {
				errs[i] = err
				return
			}
			var set protocol.Settings
			if err := c.do(ctx, http.MethodPost, o.target+"/api/v1/connected-registries/"+name+"/settings", o.user, o.password,
				protocol.SettingsRequest{ParentProtocol: "http", GeneratePassword: 1}, &set); err != nil {
				errs[i] = err
				return
			}
			cs, err := protocol.ParseConnectionString(set.ConnectionString)
			if err != nil {
				errs[i] = err
				return
			}
			s := fleetSite{name: name, user: cs.SyncTokenName, pass: cs.SyncTokenPassword, activation: fmt.Sprintf("bench-%d-%d", i, rand.Uint64())}
			_ = c.do(ctx, http.MethodPost, o.target+"/api/v1/connected-registries/"+name+"/deactivate", o.user, o.password, nil, nil)
			if err := c.do(ctx, http.MethodPost, o.target+"/api/v1/gateway/"+name+"/activate", s.user, s.pass,
				protocol.ActivateRequest{ActivationID: s.activation, Version: "outpost-bench"}, nil); err != nil {
				errs[i] = err
				return
			}
			for _, w := range o.warm {
				if err := c.do(ctx, http.MethodGet, w+"/api/v1/gateway/"+name+"/config", s.user, s.pass, nil, nil); err != nil {
					errs[i] = err
					return
				}
			}
			sites[i] = s
			if n := done.Add(1); n%100 == 0 {
				_, _ = fmt.Fprintf(progress, "fleet: %d of %d sites ready\n", n, o.sites)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("fleet setup: %w", err)
	}
	return sites, nil
}

// serverCPU is the CPU time of pids together, or -1 without pids or when
// one cannot be read.
func serverCPU(pids []int) time.Duration {
	if len(pids) == 0 {
		return -1
	}
	var sum time.Duration
	for _, p := range pids {
		d, err := procCPU(p)
		if err != nil {
			return -1
		}
		sum += d
	}
	return sum
}
