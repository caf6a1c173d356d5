package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// withOld returns a temporary directory and the path in it of a file
// holding "old".
func withOld(t *testing.T, name string) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	path = filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, path
}

func TestWrite(t *testing.T) {
	dir, p := withOld(t, "values.yaml")
	if err := Write(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode after Write: %v, want 0600", st.Mode())
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("content %q", b)
	}
	if es, _ := os.ReadDir(dir); len(es) != 1 {
		t.Fatalf("%d entries left in the directory, want 1", len(es))
	}
	if err := Write(filepath.Join(dir, "missing", "x"), nil, 0o600); err == nil {
		t.Fatal("a write into a missing directory succeeded")
	}
}

// TestWriteSyncsBeforeRename: Write syncs the temporary file, holding the
// whole new content, while path still has the old one, that is, before
// the rename makes the new content visible. The real sync runs; the test
// only watches it.
func TestWriteSyncsBeforeRename(t *testing.T) {
	dir, p := withOld(t, "state.json")
	type seen struct{ name, synced, atPath string }
	var syncs []seen
	sync := syncFile
	t.Cleanup(func() { syncFile = sync })
	syncFile = func(f *os.File) error {
		b, _ := os.ReadFile(f.Name())
		cur, _ := os.ReadFile(p)
		syncs = append(syncs, seen{f.Name(), string(b), string(cur)})
		return sync(f)
	}
	if err := Write(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if len(syncs) != 1 {
		t.Fatalf("Write synced %d files, want 1", len(syncs))
	}
	s := syncs[0]
	if s.name == p || filepath.Dir(s.name) != dir {
		t.Errorf("synced %s, want a temporary file beside %s", s.name, p)
	}
	if s.synced != "new" || s.atPath != "old" {
		t.Errorf("at the sync the file held %q and %s held %q, want the new content synced before the rename", s.synced, p, s.atPath)
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "new" {
		t.Fatalf("after Write: %q, %v; want the new content", b, err)
	}
}
