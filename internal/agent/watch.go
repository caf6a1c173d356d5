package agent

import (
	"context"
	"log/slog"
	"time"
)

// WatchOptions control Watch.
type WatchOptions struct {
	// Interval between two applies (10 s when zero).
	Interval time.Duration
	// UninstallOnExit removes the files when ctx ends (a DaemonSet pod
	// stopping); by default they stay, so pulls keep working.
	UninstallOnExit bool
	// Report receives the result of every apply that changed something.
	Report func(Result)
}

// Watch installs o, then re-applies it every interval until ctx ends, so
// a rotated CA file (a Secret update) or a deleted file is put back. An
// apply that changes nothing writes nothing. The first install's error
// is returned; later ones are logged and retried. When ctx ends it
// uninstalls if asked to and returns nil.
func Watch(ctx context.Context, o Options, w WatchOptions, log *slog.Logger) error {
	if w.Interval <= 0 {
		w.Interval = 10 * time.Second
	}
	res, err := Install(o)
	if err != nil {
		return err
	}
	if w.Report != nil {
		w.Report(res)
	}
	log.Info("trust installed, watching the CA file", "host", o.Host, "ca_file", o.CAFile, "interval", w.Interval)
	t := time.NewTicker(w.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if !w.UninstallOnExit {
				log.Info("stopping; the trust files stay", "host", o.Host)
				return nil
			}
			res, err := Uninstall(o)
			if w.Report != nil {
				w.Report(res)
			}
			if err != nil {
				return err
			}
			log.Info("stopping; trust files removed", "host", o.Host)
			return nil
		case <-t.C:
			res, err := Install(o)
			if err != nil {
				log.Error("re-apply trust", "host", o.Host, "err", err)
				continue
			}
			if res.Changed() {
				log.Info("trust re-applied", "host", o.Host)
				if w.Report != nil {
					w.Report(res)
				}
			}
		}
	}
}
