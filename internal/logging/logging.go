// Package logging builds the server's logger with a level that can change
// while it runs: a connected registry applies the log level its parent
// configures on every refresh.
package logging

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/outpost-registry/outpost/internal/config"
)

// off is a level above every record's: the logger writes nothing.
const off = slog.LevelError + 1000

// Level is the logger's current level, safe for concurrent use.
type Level struct{ v slog.LevelVar }

// Set changes the level to one of config's names (Debug, Information,
// Warning, Error, None), case-insensitively.
func (l *Level) Set(name string) error {
	lv, err := config.ParseLogLevel(name)
	if err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	l.set(lv)
	return nil
}

func (l *Level) set(lv config.LogLevel) {
	s, on := lv.Slog()
	if !on {
		s = off
	}
	l.v.Set(s)
}

// Name is the current level's config name.
func (l *Level) Name() config.LogLevel {
	switch s := l.v.Level(); {
	case s >= off:
		return config.LevelNone
	case s >= slog.LevelError:
		return config.LevelError
	case s >= slog.LevelWarn:
		return config.LevelWarning
	case s >= slog.LevelInfo:
		return config.LevelInformation
	default:
		return config.LevelDebug
	}
}

// New returns a logger writing to w in format (JSON unless text) at
// level, and the handle that changes its level.
func New(w io.Writer, level config.LogLevel, format config.LogFormat) (*slog.Logger, *Level) {
	l := &Level{}
	l.set(level)
	opts := &slog.HandlerOptions{Level: &l.v}
	if format == config.FormatText {
		return slog.New(slog.NewTextHandler(w, opts)), l
	}
	return slog.New(slog.NewJSONHandler(w, opts)), l
}
