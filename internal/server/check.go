package server

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/outpost-registry/outpost/internal/config"
	"github.com/outpost-registry/outpost/internal/protocol"
	"github.com/outpost-registry/outpost/internal/syncer"
)

// parentSettings are what a configuration says about the parent, checked.
type parentSettings struct {
	popts      syncer.ParentOptions
	name, sync string
	// static is the configuration of a generic parent (nil with a
	// connection string, whose parent sends it).
	static *protocol.EdgeConfig
}

// CheckConfig reports the problems of cfg that config.Validate cannot
// see, because they need the connected-registry rules: the connection
// string, and a generic parent's URL, CA file, token realm hosts, sync
// schedule, sync window and password file (config.Validate reports its
// mode). Every problem is reported, joined, each naming its key.
// serve and `config validate` both run it after config.Validate, and New
// relies on the same checks, so what validates also starts.
func CheckConfig(cfg config.Config) error {
	_, err := parentSettingsOf(cfg, false)
	_, perr := configPolicies(cfg.Retention)
	return errors.Join(err, perr)
}

// parentSettingsOf checks and parses the parent settings of cfg; it
// returns nil settings when cfg names no parent. checkMode reports a bad
// mode too, for callers that did not run config.Validate.
func parentSettingsOf(cfg config.Config, checkMode bool) (*parentSettings, error) {
	if cfg.ConnectionString == "" && cfg.Parent.URL == "" {
		return nil, nil
	}
	ps := &parentSettings{popts: syncer.ParentOptions{CAFile: cfg.Parent.CAFile, TokenRealmHosts: cfg.Parent.TokenRealmHosts}}
	if cfg.ConnectionString != "" {
		// The parser's errors never echo the password.
		cs, err := protocol.ParseConnectionString(cfg.ConnectionString)
		if err != nil {
			return nil, fmt.Errorf("connectionString: %w", err)
		}
		ps.popts.URL, ps.popts.Username, ps.popts.Password = cs.ParentURL(), cs.SyncTokenName, cs.SyncTokenPassword
		ps.name, ps.sync = cs.ConnectedRegistryName, cs.SyncTokenName
		if _, err := syncer.NewParent(ps.popts); err != nil {
			return nil, fmt.Errorf("connectionString: %w", err)
		}
		return ps, nil
	}
	var errs []error
	ps.popts.URL, ps.popts.Username = cfg.Parent.URL, cfg.Parent.Username
	if cfg.Parent.PasswordFile != "" {
		b, err := os.ReadFile(cfg.Parent.PasswordFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("parent.passwordFile: %w", err))
		}
		ps.popts.Password = strings.TrimSpace(string(b))
	}
	// The URL, CA file and token realm hosts, as the connection will use them.
	if _, err := syncer.NewParent(ps.popts); err != nil {
		errs = append(errs, fmt.Errorf("parent: %w", err))
	}
	mode, err := protocol.ParseMode(cfg.Parent.Mode)
	if err != nil && checkMode {
		errs = append(errs, fmt.Errorf("parent.mode: %w", err))
	}
	if _, err := protocol.ParseSchedule(cfg.Parent.SyncSchedule); err != nil {
		errs = append(errs, fmt.Errorf("parent.syncSchedule: %w", err))
	}
	if cfg.Parent.SyncWindow != "" {
		if _, err := protocol.ParseSyncWindow(cfg.Parent.SyncWindow); err != nil {
			errs = append(errs, fmt.Errorf("parent.syncWindow: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	ps.static = &protocol.EdgeConfig{Mode: mode, Repositories: cfg.Parent.Repositories, SyncSchedule: cfg.Parent.SyncSchedule,
		SyncWindow: cfg.Parent.SyncWindow, SyncMessageTTL: protocol.DefaultTTL, LogLevel: string(cfg.Log.Level)}
	return ps, nil
}
