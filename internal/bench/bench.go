// Package bench is Outpost's load tool: it builds a reproducible synthetic
// dataset, seeds registries with it over the OCI Distribution API, runs
// bounded pull, push and small-request workloads against them, and prints
// one JSON line per measurement. The compare mode starts Outpost, the CNCF
// distribution registry and a minimal sendfile file server side by side
// and reports each figure as a ratio (see docs/benchmarks.md).
//
// It is a measuring tool, not a test: nothing here asserts a timing.
package bench

import (
	"cmp"
	"encoding/json"
	"io"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"
)

// Target names used in results and ratios.
const (
	TargetOutpost      = "outpost"
	TargetDistribution = "distribution"
	TargetSendfile     = "sendfile"
)

// Result is one measurement, printed as one JSON line. Fields that do not
// apply to a workload are omitted.
type Result struct {
	Workload    string `json:"workload"`
	Target      string `json:"target"`
	Concurrency int    `json:"concurrency,omitempty"`
	// Round numbers the repetitions of the workload matrix (--rounds).
	Round   int     `json:"round,omitempty"`
	Cores   int     `json:"cores"`
	MBPerS  float64 `json:"mb_per_s,omitempty"`
	ReqPerS float64 `json:"req_per_s,omitempty"`
	// ManifestsPerS counts top-level manifest pulls (one per image).
	ManifestsPerS float64 `json:"manifests_per_s,omitempty"`
	P50ms         float64 `json:"p50_ms,omitempty"`
	P99ms         float64 `json:"p99_ms,omitempty"`
	Errors        int64   `json:"errors"`
	Requests      int64   `json:"requests,omitempty"`
	Bytes         int64   `json:"bytes,omitempty"`
	Seconds       float64 `json:"seconds,omitempty"`
	// PeakRSSMB is the server's VmHWM during this workload alone (reset
	// through /proc/<pid>/clear_refs before it starts).
	PeakRSSMB float64 `json:"peak_rss_mb,omitempty"`
	// ServerCPU and ClientCPU are CPU seconds used by the server process
	// and by this tool during the workload; together with Seconds and
	// Cores they tell whether the machine was saturated.
	ServerCPU float64 `json:"server_cpu_s,omitempty"`
	ClientCPU float64 `json:"client_cpu_s,omitempty"`
	// ServerCPUPerGiB (transfers) and ServerCPUPerReq (manifest
	// requests) are the server's CPU cost per unit of work. They depend
	// far less on other load on the machine than rates do.
	ServerCPUPerGiB float64 `json:"server_cpu_s_per_gib,omitempty"`
	ServerCPUPerReq float64 `json:"server_cpu_us_per_req,omitempty"`
	// MachineUse is the share of all cores that the server and this tool
	// used together; well below 1 on a busy machine means other work
	// took the rest.
	MachineUse float64 `json:"machine_use,omitempty"`
	// Resource figures (workload "start", "idle", "start_10k_tags").
	RSSMB   float64 `json:"rss_mb,omitempty"`
	ReadyMS float64 `json:"ready_ms,omitempty"`
	// ListenMS is the time to the first HTTP answer of any status.
	ListenMS float64 `json:"listen_ms,omitempty"`
	Note     string  `json:"note,omitempty"`
}

// Ratio compares Outpost with distribution (and, for pulls, with the
// sendfile limit) for one workload and concurrency.
type Ratio struct {
	Workload    string  `json:"workload"`
	Concurrency int     `json:"concurrency,omitempty"`
	Metric      string  `json:"metric"`
	OverDist    float64 `json:"ratio_outpost_over_distribution"`
	// CPUOverDist compares the servers' CPU cost per unit of work
	// (lower is better for Outpost).
	CPUOverDist float64 `json:"cpu_cost_ratio_outpost_over_distribution,omitempty"`
	OverLimit   float64 `json:"ratio_outpost_over_sendfile,omitempty"`
	DistOverLim float64 `json:"ratio_distribution_over_sendfile,omitempty"`
}

// emitter writes JSON lines and keeps every result for the summary.
type emitter struct {
	mu      sync.Mutex
	w       io.Writer
	results []Result
}

func (e *emitter) result(r Result) {
	r.Cores = runtime.NumCPU()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.results = append(e.results, r)
	e.line(r)
}

func (e *emitter) line(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	b = append(b, '\n')
	_, _ = e.w.Write(b)
}

// all returns a copy of every result so far.
func (e *emitter) all() []Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.results)
}

// find returns the result for workload, target and concurrency. When
// there are several rounds it returns the median one by the workload's
// headline figure (MB/s for transfers, requests/s otherwise), so that a
// disturbance in one round does not decide a ratio.
func (e *emitter) find(workload, target string, conc int) (Result, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var all []Result
	for _, r := range e.results {
		if r.Workload == workload && r.Target == target && r.Concurrency == conc {
			all = append(all, r)
		}
	}
	if len(all) == 0 {
		return Result{}, false
	}
	key := func(r Result) float64 {
		if r.MBPerS != 0 && workload != WorkloadManifestGet {
			return r.MBPerS
		}
		return r.ReqPerS
	}
	slices.SortStableFunc(all, func(a, b Result) int { return cmp.Compare(key(a), key(b)) })
	return all[(len(all)-1)/2], true
}

// percentile returns the p-th percentile (0..100, nearest rank) of sorted
// durations in milliseconds, or 0 for none.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return ms(sorted[rank-1])
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }

// round keeps three significant decimals, enough for the JSON lines.
func round(f float64) float64 { return math.Round(f*1000) / 1000 }

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

const mib = 1 << 20

func mb(bytes int64) float64 { return float64(bytes) / mib }
