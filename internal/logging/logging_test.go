package logging_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/logging"
)

func TestLevelChangesWhileRunning(t *testing.T) {
	var buf bytes.Buffer
	log, lvl := logging.New(&buf, config.LevelWarning, config.FormatJSON)
	log.Info("hidden")
	if err := lvl.Set("debug"); err != nil {
		t.Fatal(err)
	}
	log.Debug("shown")
	if err := lvl.Set("None"); err != nil {
		t.Fatal(err)
	}
	log.Error("silenced")
	if got := buf.String(); strings.Contains(got, "hidden") || !strings.Contains(got, "shown") || strings.Contains(got, "silenced") {
		t.Fatalf("log = %q", got)
	}
	if lvl.Name() != config.LevelNone {
		t.Fatalf("Name = %s, want None", lvl.Name())
	}
	if err := lvl.Set("Loud"); err == nil {
		t.Fatal("an unknown level was accepted")
	}
	for _, n := range []config.LogLevel{config.LevelDebug, config.LevelInformation, config.LevelWarning, config.LevelError} {
		_ = lvl.Set(string(n))
		if lvl.Name() != n {
			t.Fatalf("Name after Set(%s) = %s", n, lvl.Name())
		}
	}
}
