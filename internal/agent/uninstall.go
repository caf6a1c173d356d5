package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Uninstall removes what Install wrote for o.Host: the files listed in
// each host directory's marker (putting back originals replaced with
// --force), the markers, and the directories Install created once they
// are empty. Mirror directories are those of o.MirrorOf plus those the
// last install recorded. Files changed since outpost wrote them, and
// files it never wrote, stay.
func Uninstall(o Options) (Result, error) {
	var res Result
	if err := o.validate(); err != nil {
		return res, err
	}
	// The host's own directory goes last in each certs directory: it was
	// written first, so its marker is the one that may record creating
	// the certs directory itself.
	if o.ContainerdCertsDir != "" {
		d := o.onNode(o.ContainerdCertsDir)
		own := filepath.Join(d, o.Host)
		m, err := readMarker(own)
		if err != nil {
			return res, err
		}
		mirrors := slices.Clone(o.MirrorOf)
		if m != nil {
			mirrors = append(mirrors, m.Mirrors...)
		}
		slices.Sort(mirrors)
		for _, up := range slices.Compact(mirrors) {
			if err := uninstallDir(filepath.Join(d, up), o.Host, &res); err != nil {
				return res, err
			}
		}
		if err := o.uninstallOwn(d, &res); err != nil {
			return res, err
		}
	}
	if o.DockerCertsDir != "" {
		if err := o.uninstallOwn(o.onNode(o.DockerCertsDir), &res); err != nil {
			return res, err
		}
	}
	return res, nil
}

// uninstallOwn undoes install in the alias directory (Options.alias) and
// then in the host's own directory of the certs directory d. An alias
// directory that another install owns is kept, as uninstallDir checks the
// marker's host.
func (o *Options) uninstallOwn(d string, res *Result) error {
	if alias := o.alias(); alias != "" {
		if err := uninstallDir(filepath.Join(d, alias), o.Host, res); err != nil {
			return err
		}
	}
	return uninstallDir(filepath.Join(d, o.Host), o.Host, res)
}

// uninstallDir undoes install in one host directory, if outpost wrote
// there for host.
func uninstallDir(dir, host string, res *Result) error {
	m, err := readMarker(dir)
	if err != nil {
		return err
	}
	if m == nil {
		if _, err := os.Stat(filepath.Join(dir, hostsFile)); err == nil {
			res.add(Kept, filepath.Join(dir, hostsFile), "not written by outpost")
		}
		return nil
	}
	if m.Host != host {
		res.add(Kept, dir, fmt.Sprintf("written by outpost for %s, not %s", m.Host, host))
		return nil
	}
	names := make([]string, 0, len(m.Files))
	for n := range m.Files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		if err := uninstallFile(dir, name, m.Files[name], res); err != nil {
			return err
		}
	}
	path := filepath.Join(dir, markerFile)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	res.add(Removed, path, "")
	if m.CreatedDir {
		// Only an empty directory goes: anything else in it is not ours.
		if err := os.Remove(dir); err == nil {
			res.add(Removed, dir, "")
			if m.CreatedParent && os.Remove(filepath.Dir(dir)) == nil {
				res.add(Removed, filepath.Dir(dir), "")
			}
		}
	}
	return nil
}

func uninstallFile(dir, name string, rec fileRecord, res *Result) error {
	path := filepath.Join(dir, name)
	cur, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	case digest(cur) != rec.SHA256:
		res.add(Kept, path, "changed since outpost wrote it")
		return nil
	default:
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		res.add(Removed, path, "")
	}
	if rec.Backup == "" {
		return nil
	}
	backup := filepath.Join(dir, rec.Backup)
	if err := os.Rename(backup, path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("restore %s: %w", path, err)
	}
	res.add(Restored, path, "from "+rec.Backup)
	return nil
}
