package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// quickStart returns the shell blocks of README.md's "Quick start"
// section, in order.
func quickStart(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Quick start\n")
	if start < 0 {
		t.Fatal(`README.md has no "## Quick start" section`)
	}
	section := text[start+1:]
	if end := strings.Index(section, "\n## "); end >= 0 {
		section = section[:end]
	}
	var script []string
	for rest := section; ; {
		i := strings.Index(rest, "```sh\n")
		if i < 0 {
			break
		}
		rest = rest[i+len("```sh\n"):]
		j := strings.Index(rest, "```")
		if j < 0 {
			t.Fatal("README.md: an unterminated code block in Quick start")
		}
		script = append(script, rest[:j])
		rest = rest[j+3:]
	}
	if len(script) < 3 {
		t.Fatalf("Quick start has %d shell blocks, want at least 3", len(script))
	}
	return strings.Join(script, "\n")
}

// TestReadmeQuickStart runs README.md's quick start as written — a root on
// localhost:5000 and a site on localhost:5001, one machine, only the
// documented commands — in an empty directory, so that the README cannot
// drift from what works. The one change: `go build -o bin/outpost` is
// served by the binary under test.
func TestReadmeQuickStart(t *testing.T) {
	requireE2E(t)
	bin := os.Getenv("OUTPOST_BIN")
	if bin == "" {
		t.Fatal("OUTPOST_BIN must name the built outpost binary")
	}
	script := quickStart(t)
	const build = "go build -o bin/outpost ./cmd/outpost\n"
	if !strings.Contains(script, build) {
		t.Fatalf("the quick start no longer builds bin/outpost with %q", build)
	}
	script = strings.Replace(script, build, "", 1)

	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(bin, filepath.Join(dir, "bin", "outpost")); err != nil {
		t.Fatal(err)
	}
	readme, _ := os.ReadFile("../../README.md")
	if err := os.WriteFile(filepath.Join(dir, "README.md"), readme, 0o644); err != nil {
		t.Fatal(err)
	}
	crane := tool(t, "crane")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = dir
	home := filepath.Join(dir, "home")
	cmd.Env = append(os.Environ(),
		"HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"), "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"PATH="+filepath.Dir(crane)+string(os.PathListSeparator)+os.Getenv("PATH"),
		"OUTPOST_ADMIN_PASSWORD=", "OUTPOST_SERVER=", "OUTPOST_USERNAME=", "OUTPOST_PASSWORD=", "OUTPOST_CONNECTION_STRING=")
	// The servers the script starts in the background belong to its
	// process group: end them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A file, not a pipe: the servers left running in the background keep
	// their output open after the script ends.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "quickstart.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }()
	err = cmd.Wait()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	outBytes, _ := os.ReadFile(logFile.Name())
	out := string(outBytes)
	if err != nil {
		t.Fatalf("the README quick start failed: %v\n%s", err, out)
	}
	for _, f := range []string{"web.tar", "site-web.tar"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s was not pulled: %v", f, err)
		}
	}
	if !strings.Contains(out, "factory") {
		t.Errorf("connected-registry list did not show factory:\n%s", out)
	}
}
