package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// headline names the figure a workload is compared by.
var headline = []struct{ workload, metric string }{
	{WorkloadPull, "mb_per_s"},
	{WorkloadPushMonolith, "mb_per_s"},
	{WorkloadPushChunked, "mb_per_s"},
	{WorkloadManifestHead, "req_per_s"},
	{WorkloadManifestGet, "req_per_s"},
}

func metric(r Result, name string) float64 {
	switch name {
	case "mb_per_s":
		return r.MBPerS
	case "req_per_s":
		return r.ReqPerS
	case "ready_ms":
		return r.ReadyMS
	case "listen_ms":
		return r.ListenMS
	case "rss_mb":
		return r.RSSMB
	}
	return 0
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round(a / b)
}

// ratios prints one ratio line per workload and concurrency that both
// registries ran, and per resource figure.
func ratios(em *emitter, concs []int) []Ratio {
	var out []Ratio
	for _, h := range headline {
		for _, conc := range concs {
			o, ok1 := em.find(h.workload, TargetOutpost, conc)
			d, ok2 := em.find(h.workload, TargetDistribution, conc)
			if !ok1 || !ok2 {
				continue
			}
			r := Ratio{Workload: h.workload, Concurrency: conc, Metric: h.metric, OverDist: ratio(metric(o, h.metric), metric(d, h.metric)),
				CPUOverDist: ratio(o.ServerCPUPerGiB+o.ServerCPUPerReq, d.ServerCPUPerGiB+d.ServerCPUPerReq)}
			if s, ok := em.find(h.workload, TargetSendfile, conc); ok {
				r.OverLimit = ratio(metric(o, h.metric), metric(s, h.metric))
				r.DistOverLim = ratio(metric(d, h.metric), metric(s, h.metric))
			}
			out = append(out, r)
		}
	}
	for _, w := range []struct{ workload, metric string }{
		{WorkloadStart, "ready_ms"}, {WorkloadStart, "rss_mb"}, {WorkloadStartTags, "ready_ms"},
	} {
		o, ok1 := em.find(w.workload, TargetOutpost, 0)
		d, ok2 := em.find(w.workload, TargetDistribution, 0)
		if ok1 && ok2 {
			out = append(out, Ratio{Workload: w.workload, Metric: w.metric, OverDist: ratio(metric(o, w.metric), metric(d, w.metric))})
		}
	}
	for _, r := range out {
		em.line(r)
	}
	return out
}

// summarize prints the ratio lines on the JSON stream and a table and
// the targets on w. The targets are reported, never enforced.
func summarize(em *emitter, w io.Writer, concs []int) {
	rs := ratios(em, concs)
	if len(rs) == 0 {
		_, _ = fmt.Fprintln(w, "no targets named outpost and distribution to compare; the figures are in the JSON lines")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "\nworkload\tc\toutpost\tdistribution\tsendfile\toutpost/dist\toutpost/sendfile\tCPU cost o/d\toutpost p50/p99 ms\tdist p50/p99 ms\tpeak RSS MB outpost/dist\tmachine use\terrors o/d")
	for _, r := range rs {
		if r.Concurrency == 0 {
			continue
		}
		o, _ := em.find(r.Workload, TargetOutpost, r.Concurrency)
		d, _ := em.find(r.Workload, TargetDistribution, r.Concurrency)
		s, hasS := em.find(r.Workload, TargetSendfile, r.Concurrency)
		unit := " MB/s"
		if r.Metric == "req_per_s" {
			unit = " req/s"
		}
		limit, overLimit := "-", "-"
		if hasS {
			limit = fmt.Sprintf("%.1f%s", metric(s, r.Metric), unit)
			overLimit = fmt.Sprintf("%.2f", r.OverLimit)
		}
		_, _ = fmt.Fprintf(tw, "%s\t%d\t%.1f%s\t%.1f%s\t%s\t%.2f\t%s\t%.2f\t%.2f/%.2f\t%.2f/%.2f\t%.1f/%.1f\t%.2f/%.2f\t%d/%d\n",
			r.Workload, r.Concurrency, metric(o, r.Metric), unit, metric(d, r.Metric), unit, limit, r.OverDist, overLimit,
			r.CPUOverDist, o.P50ms, o.P99ms, d.P50ms, d.P99ms, o.PeakRSSMB, d.PeakRSSMB, o.MachineUse, d.MachineUse, o.Errors, d.Errors)
	}
	_, _ = fmt.Fprintln(tw, "\nresource\toutpost\tdistribution\tsendfile")
	for _, w := range []string{WorkloadStart, WorkloadStartTags} {
		row := w
		for _, t := range []string{TargetOutpost, TargetDistribution, TargetSendfile} {
			if r, ok := em.find(w, t, 0); ok {
				row += fmt.Sprintf("\tready %.1f ms (listen %.1f ms), RSS %.1f MB", r.ReadyMS, r.ListenMS, r.RSSMB)
			} else {
				row += "\t-"
			}
		}
		_, _ = fmt.Fprintln(tw, row)
	}
	_ = tw.Flush()
	if s := syncSummary(em.all()); s != "" {
		_, _ = fmt.Fprint(w, "\nsync (edge Outpost from a root Outpost)\n"+s)
	}
	_, _ = fmt.Fprintln(w, "\ntargets (reported, not enforced):")
	for _, line := range targets(em) {
		_, _ = fmt.Fprintln(w, "  "+line)
	}
}

func verdict(ok, known bool) string {
	switch {
	case !known:
		return "[n/a]    "
	case ok:
		return "[met]    "
	default:
		return "[NOT met]"
	}
}

// targets checks the figures against the goals of the benchmark issue.
func targets(em *emitter) []string {
	var out []string
	for _, conc := range []int{8, 32} {
		o, ok1 := em.find(WorkloadPull, TargetOutpost, conc)
		d, ok2 := em.find(WorkloadPull, TargetDistribution, conc)
		s, ok3 := em.find(WorkloadPull, TargetSendfile, conc)
		out = append(out,
			fmt.Sprintf("%s pull MB/s >= 1.2x distribution at c=%d: %.2fx", verdict(o.MBPerS >= 1.2*d.MBPerS, ok1 && ok2), conc, ratio(o.MBPerS, d.MBPerS)),
			fmt.Sprintf("%s pull MB/s >= 85%% of sendfile at c=%d: %.0f%%", verdict(o.MBPerS >= 0.85*s.MBPerS, ok1 && ok3), conc, 100*ratio(o.MBPerS, s.MBPerS)))
	}
	for _, w := range []string{WorkloadManifestHead, WorkloadManifestGet} {
		for _, conc := range []int{1, 8, 32} {
			o, ok1 := em.find(w, TargetOutpost, conc)
			d, ok2 := em.find(w, TargetDistribution, conc)
			out = append(out,
				fmt.Sprintf("%s %s req/s >= 2x distribution at c=%d: %.2fx", verdict(o.ReqPerS >= 2*d.ReqPerS, ok1 && ok2), w, conc, ratio(o.ReqPerS, d.ReqPerS)),
				fmt.Sprintf("%s %s outpost p99 <= distribution p50 at c=%d: %.2f vs %.2f ms", verdict(o.P99ms <= d.P50ms, ok1 && ok2), w, conc, o.P99ms, d.P50ms))
		}
	}
	st, ok := em.find(WorkloadStart, TargetOutpost, 0)
	out = append(out, fmt.Sprintf("%s idle RSS <= 25 MB: %.1f MB", verdict(st.RSSMB <= 25, ok), st.RSSMB))
	p, ok := em.find(WorkloadPull, TargetOutpost, 32)
	out = append(out, fmt.Sprintf("%s peak RSS with 32 pullers <= 100 MB: %.1f MB", verdict(p.PeakRSSMB <= 100, ok), p.PeakRSSMB))
	tg, ok := em.find(WorkloadStartTags, TargetOutpost, 0)
	out = append(out, fmt.Sprintf("%s start to ready <= 100 ms with tags in the store: %.1f ms (%s)", verdict(tg.ReadyMS <= 100, ok), tg.ReadyMS, tg.Note))
	floor, ok1 := em.find(WorkloadSyncFloor, TargetOutpost, syncConcurrency)
	full, ok2 := em.find(WorkloadSyncFull, TargetOutpost, syncConcurrency)
	out = append(out, fmt.Sprintf("%s full sync <= 1.2x the verify+write floor: %.2fx (%.2f s vs %.2f s)", verdict(full.Seconds <= 1.2*floor.Seconds, ok1 && ok2),
		ratio(full.Seconds, floor.Seconds), full.Seconds, floor.Seconds))
	gen, ok3 := em.find(WorkloadSyncGeneric, TargetOutpost, syncConcurrency)
	dfloor, _ := em.find(WorkloadSyncFloor, TargetDistribution, syncConcurrency)
	out = append(out, fmt.Sprintf("%s full sync from distribution no slower than from Outpost: %.2f s vs %.2f s (%.2fx the floor from distribution, %.2f s)", verdict(gen.Seconds <= full.Seconds, ok2 && ok3),
		gen.Seconds, full.Seconds, ratio(gen.Seconds, dfloor.Seconds), dfloor.Seconds))
	tags, ok := em.find(WorkloadSyncTags, TargetOutpost, 0)
	out = append(out, fmt.Sprintf("%s first sync of the tags <= 5 s: %.2f s (%s)", verdict(tags.Seconds <= 5, ok), tags.Seconds, tags.Note))
	out = append(out, fmt.Sprintf("%s edge peak RSS during the full sync <= 40 MB: %.1f MB", verdict(full.PeakRSSMB <= 40 && full.PeakRSSMB > 0, ok2), full.PeakRSSMB))
	one, ok := em.find(WorkloadSyncOneTag, TargetOutpost, 0)
	out = append(out, fmt.Sprintf("%s one moved tag among the tags reaches the edge < 1 s after the run starts: %.3f s", verdict(one.Seconds < 1, ok), one.Seconds))
	return out
}
