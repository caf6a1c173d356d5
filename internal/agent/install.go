package agent

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/outpost-registry/outpost/internal/atomicfile"
)

// Action says what install or uninstall did to one path.
type Action string

// Actions reported in a Result.
const (
	Wrote     Action = "wrote"
	Unchanged Action = "unchanged"
	Removed   Action = "removed"
	Restored  Action = "restored"
	Kept      Action = "kept"
	Skipped   Action = "skipped"
)

// Change is one line of a Result.
type Change struct {
	Action Action
	Path   string // path in the agent's filesystem (under Root)
	Note   string
}

// Result lists what install or uninstall did, in order.
type Result struct {
	Changes []Change
}

// Changed reports whether anything was written or removed.
func (r Result) Changed() bool {
	for _, c := range r.Changes {
		if c.Action == Wrote || c.Action == Removed || c.Action == Restored {
			return true
		}
	}
	return false
}

func (r *Result) add(a Action, path, note string) {
	r.Changes = append(r.Changes, Change{Action: a, Path: path, Note: note})
}

// marker is the .outpost-trust file of a host directory: the files that
// outpost wrote there, so that uninstall removes exactly those and
// install can tell its own files from an operator's.
type marker struct {
	WrittenBy  string `json:"writtenBy"`
	Host       string `json:"host"`
	CreatedDir bool   `json:"createdDir,omitempty"`
	// CreatedParent: install also created the certs directory.
	CreatedParent bool                  `json:"createdParent,omitempty"`
	Files         map[string]fileRecord `json:"files"`
	// Mirrors (containerd's own host directory only) lists the upstream
	// hosts mirrored by the last install.
	Mirrors []string `json:"mirrors,omitempty"`
}

type fileRecord struct {
	SHA256 string `json:"sha256"`
	// Backup names the foreign file replaced with --force.
	Backup string `json:"backup,omitempty"`
}

// dirPlan is what one host directory should hold.
type dirPlan struct {
	dir     string            // under Root
	files   map[string][]byte // name → content
	mirrors []string
	own     bool // Outpost's own containerd directory (records mirrors)
	// alias: the directory of the host's other spelling (see
	// Options.alias); it yields to anything it does not own.
	alias bool
}

// Install writes the trust files for o, atomically and idempotently: a
// file whose content is already right is not touched. It refuses, before
// writing anything, to replace a file it did not write unless o.Force.
func Install(o Options) (Result, error) {
	var res Result
	if err := o.validate(); err != nil {
		return res, err
	}
	ca, err := readCA(o.CAFile)
	if err != nil {
		return res, err
	}
	plans, stale, err := o.plan(ca, &res)
	if err != nil {
		return res, err
	}
	plans, err = o.dropBlockedAliases(plans, &res)
	if err != nil {
		return res, err
	}
	var foreign []error
	for _, p := range plans {
		foreign = append(foreign, checkForeign(p, o.Force)...)
	}
	if len(foreign) > 0 {
		return res, errors.Join(foreign...)
	}
	for _, up := range stale {
		if err := uninstallDir(filepath.Join(o.onNode(o.ContainerdCertsDir), up), o.Host, &res); err != nil {
			return res, err
		}
	}
	for _, p := range plans {
		if err := applyDir(p, o.Host, &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// plan lists the host directories to write and the mirror directories of
// an earlier install that are no longer wanted.
func (o *Options) plan(ca []byte, res *Result) ([]*dirPlan, []string, error) {
	byDir := map[string]*dirPlan{}
	var order []string
	want := func(dir string) *dirPlan {
		if p, ok := byDir[dir]; ok {
			return p
		}
		p := &dirPlan{dir: dir, files: map[string][]byte{}}
		byDir[dir] = p
		order = append(order, dir)
		return p
	}
	var stale []string
	if d, ok := o.certsDir(o.ContainerdCertsDir, "containerd", res); ok {
		// containerd resolves a relative ca against the host directory, so
		// the files work wherever the certs directory is mounted or
		// pointed at (--root, ctr --hosts-dir).
		caPath := caFile
		own := want(filepath.Join(d, o.Host))
		own.own, own.mirrors = true, slices.Clone(o.MirrorOf)
		slices.Sort(own.mirrors)
		own.mirrors = slices.Compact(own.mirrors)
		own.files[hostsFile] = ownHosts(o.Host, caPath)
		own.files[caFile] = ca
		if alias := o.alias(); alias != "" {
			p := want(filepath.Join(d, alias))
			p.alias = true
			p.files[hostsFile] = aliasHosts(alias, o.Host, caPath)
			p.files[caFile] = ca
		}
		for _, up := range own.mirrors {
			want(filepath.Join(d, up)).files[hostsFile] = mirrorHosts(up, o.Host, filepath.Join("..", o.Host, caFile))
		}
		m, err := readMarker(own.dir)
		if err != nil {
			return nil, nil, err
		}
		if m != nil {
			for _, up := range m.Mirrors {
				if !slices.Contains(own.mirrors, up) {
					stale = append(stale, up)
				}
			}
		}
	}
	if d, ok := o.certsDir(o.DockerCertsDir, "docker", res); ok {
		want(filepath.Join(d, o.Host)).files[caFile] = ca
		if alias := o.alias(); alias != "" {
			p := want(filepath.Join(d, alias))
			p.alias = true
			p.files[caFile] = ca
		}
	}
	if len(order) == 0 {
		return nil, nil, fmt.Errorf("%w: neither %q nor %q exists under %q", ErrNothingToDo,
			filepath.Dir(o.ContainerdCertsDir), filepath.Dir(o.DockerCertsDir), o.rootName())
	}
	plans := make([]*dirPlan, 0, len(order))
	for _, d := range order {
		plans = append(plans, byDir[d])
	}
	return plans, stale, nil
}

// dropBlockedAliases leaves out each alias directory that holds what this
// install does not own: files outpost did not write (unless Force, which
// keeps them aside as for the host's own directory), or a marker of an
// install for another host, which is never taken over. The host's own
// directory is what was asked for, so a blocked alias is reported as
// skipped rather than failing the install.
func (o *Options) dropBlockedAliases(plans []*dirPlan, res *Result) ([]*dirPlan, error) {
	kept := plans[:0]
	for _, p := range plans {
		if !p.alias {
			kept = append(kept, p)
			continue
		}
		m, err := readMarker(p.dir)
		if err != nil {
			return nil, err
		}
		if m != nil && m.Host != o.Host {
			res.add(Skipped, p.dir, fmt.Sprintf("written by outpost for %s, not %s: left as it is", m.Host, o.Host))
			continue
		}
		if errs := checkForeign(p, o.Force); len(errs) > 0 {
			res.add(Skipped, p.dir, fmt.Sprintf("holds files not written by outpost: left as it is, so images named %s "+
				"(without or with the default port) use those files; --force replaces them (%v)", filepath.Base(p.dir), errors.Join(errs...)))
			continue
		}
		kept = append(kept, p)
	}
	return kept, nil
}

// certsDir returns a runtime's certs directory under Root, or false when
// the runtime is off or not installed on the node: its configuration
// directory (the parent of certs.d, e.g. /etc/docker) does not exist.
func (o *Options) certsDir(dir, runtime string, res *Result) (string, bool) {
	if dir == "" {
		return "", false
	}
	d := o.onNode(dir)
	if _, err := os.Stat(filepath.Dir(d)); err != nil {
		res.add(Skipped, d, fmt.Sprintf("%s: %s does not exist (%s not installed?)", runtime, filepath.Dir(d), runtime))
		return "", false
	}
	return d, true
}

func (o *Options) rootName() string {
	if o.Root == "" {
		return "/"
	}
	return o.Root
}

// readCA reads the CA file and checks that it holds PEM certificates.
func readCA(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: --ca-file is required", ErrInvalidOptions)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA file: %w", err)
	}
	if _, err := parseCerts(b); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadCA, path, err)
	}
	return b, nil
}

// parseCerts decodes every CERTIFICATE block of a PEM file.
func parseCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return certs, nil
}

// checkForeign reports the files of p that are in the way: present, not
// written by outpost and different from what it would write.
func checkForeign(p *dirPlan, force bool) []error {
	if force {
		return nil
	}
	m, err := readMarker(p.dir)
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, name := range sortedNames(p.files) {
		path := filepath.Join(p.dir, name)
		cur, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", path, err))
			continue
		}
		if _, ours := m.file(name); ours || bytes.Equal(cur, p.files[name]) {
			continue
		}
		errs = append(errs, fmt.Errorf("%w: %s exists and was not written by outpost trust install; "+
			"move it away or run again with --force (the original is kept as %s%s and restored by uninstall)",
			ErrForeignFile, path, name, backupSuffix))
	}
	return errs
}

// applyDir brings one host directory to its plan: the marker first (so a
// crash never leaves a file of ours that looks foreign), then the files.
func applyDir(p *dirPlan, host string, res *Result) error {
	old, err := readMarker(p.dir)
	if err != nil {
		return err
	}
	_, statErr := os.Stat(p.dir)
	m := &marker{WrittenBy: "outpost trust install", Host: host, Files: map[string]fileRecord{}}
	if p.own {
		m.Mirrors = p.mirrors
	}
	if old != nil {
		m.CreatedDir, m.CreatedParent = old.CreatedDir, old.CreatedParent
	} else {
		_, parentErr := os.Stat(filepath.Dir(p.dir))
		m.CreatedDir = errors.Is(statErr, fs.ErrNotExist)
		m.CreatedParent = errors.Is(parentErr, fs.ErrNotExist)
	}
	type step struct {
		name   string
		write  bool
		backup bool
	}
	var steps []step
	for _, name := range sortedNames(p.files) {
		want := p.files[name]
		path := filepath.Join(p.dir, name)
		rec, ours := old.file(name)
		cur, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			steps = append(steps, step{name: name, write: true})
		case err != nil:
			return fmt.Errorf("read %s: %w", path, err)
		case !ours && bytes.Equal(cur, want):
			res.add(Unchanged, path, "identical file not written by outpost; uninstall leaves it")
			continue
		case !ours: // foreign, and Force was checked
			rec.Backup = name + backupSuffix
			steps = append(steps, step{name: name, write: true, backup: true})
		default:
			steps = append(steps, step{name: name, write: !bytes.Equal(cur, want)})
		}
		rec.SHA256 = digest(want)
		m.Files[name] = rec
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", p.dir, err)
	}
	if err := writeMarker(p.dir, m, res); err != nil {
		return err
	}
	for _, s := range steps {
		path := filepath.Join(p.dir, s.name)
		if !s.write {
			res.add(Unchanged, path, "")
			continue
		}
		note := ""
		if s.backup {
			if err := os.Rename(path, path+backupSuffix); err != nil {
				return fmt.Errorf("keep the original %s: %w", path, err)
			}
			note = "original kept as " + s.name + backupSuffix
		}
		if err := atomicfile.Write(path, p.files[s.name], 0o644); err != nil {
			return err
		}
		res.add(Wrote, path, note)
	}
	return nil
}

func sortedNames(files map[string][]byte) []string {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// file returns the record of name; a nil marker has none.
func (m *marker) file(name string) (fileRecord, bool) {
	if m == nil {
		return fileRecord{}, false
	}
	r, ok := m.Files[name]
	return r, ok
}

// readMarker returns the marker of dir, or nil when there is none.
func readMarker(dir string) (*marker, error) {
	path := filepath.Join(dir, markerFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var m marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return &m, nil
}

// writeMarker writes m unless the file already holds exactly it.
func writeMarker(dir string, m *marker, res *Result) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode marker: %w", err)
	}
	b = append(b, '\n')
	path := filepath.Join(dir, markerFile)
	if cur, err := os.ReadFile(path); err == nil && bytes.Equal(cur, b) {
		return nil
	}
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return err
	}
	res.add(Wrote, path, "")
	return nil
}
