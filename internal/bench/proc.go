package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a server process started by the tool.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{}
	err     error
}

// startProc starts bin with args, its output going to logPath. env is
// added to the tool's environment.
func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...) //nolint:gosec // the binaries are the tool's own arguments
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that a Ctrl-C on the tool reaches the
	// tool first and the servers are stopped in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace for the process to end, then
// kills it.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.name, grace)
	}
}

// logTail returns the end of the process's log, for error messages.
func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// readiness is the time from the process start to its first HTTP answer
// of any status (listen) and to its first 200 on GET /v2/ with
// credentials (ready).
type readiness struct{ listen, ready time.Duration }

const pollInterval = 2 * time.Millisecond

// waitReady polls GET /v2/ every pollInterval, each time on a new
// connection, until a 200, the process's exit or timeout. Until the
// first answer it polls without credentials, so that listen is not
// delayed by the password check; then with them.
func (p *proc) waitReady(ctx context.Context, t *Target, timeout time.Duration) (readiness, error) {
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
		Timeout:   time.Second,
	}
	defer client.CloseIdleConnections()
	var r readiness
	deadline := p.started.Add(timeout)
	for time.Now().Before(deadline) {
		if p.exited() {
			return r, fmt.Errorf("%s exited before it was ready: %v\n%s", p.name, p.err, p.logTail())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.Base+"/v2/", nil)
		if err != nil {
			return r, err
		}
		if t.User != "" && r.listen != 0 {
			req.SetBasicAuth(t.User, t.Pass)
		}
		resp, err := client.Do(req)
		now := time.Now()
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if r.listen == 0 {
				r.listen = now.Sub(p.started)
			}
			if resp.StatusCode == http.StatusOK {
				r.ready = now.Sub(p.started)
				return r, nil
			}
			continue // ask again at once, with credentials
		}
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		time.Sleep(pollInterval)
	}
	return r, fmt.Errorf("%s not ready within %s\n%s", p.name, timeout, p.logTail())
}

// freeAddr returns a free 127.0.0.1 address. The port is released before
// the server binds it; on a quiet machine nothing takes it in between.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// procStatusMB reads a memory field such as VmRSS or VmHWM from
// /proc/<pid>/status, in MiB.
func procStatusMB(pid int, field string) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, field+":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", field, err)
		}
		return round(kb / 1024), nil
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// resetPeakRSS sets VmHWM back to the current RSS (proc(5), clear_refs
// value 5), so that the next VmHWM read is the peak of one workload.
func resetPeakRSS(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0o600)
}

// userHZ is the unit of utime and stime in /proc/<pid>/stat; it is 100 on
// every Linux architecture Go supports.
const userHZ = 100

// procCPU returns the CPU time used by all threads of pid.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// selfCPU returns the CPU time used by this process.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Machine describes where a run happened; it is printed as the last JSON
// line of a comparison.
type Machine struct {
	Workload     string  `json:"workload"`
	Cores        int     `json:"cores"`
	CPUModel     string  `json:"cpu_model"`
	Kernel       string  `json:"kernel"`
	GoVersion    string  `json:"go_version"`
	Dataset      string  `json:"dataset"`
	LoadAvgStart float64 `json:"loadavg_start"`
	LoadAvgEnd   float64 `json:"loadavg_end"`
	Seconds      float64 `json:"seconds"`
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// loadAvg returns the one-minute load average, or -1.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}
