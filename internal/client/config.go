package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/outpost-registry/outpost/internal/atomicfile"
)

// Credential is a saved login.
type Credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
	CAFile   string `json:"caFile,omitempty"`
}

// Config is the CLI's saved state: logins by server and the current one.
type Config struct {
	Current string                `json:"current"`
	Servers map[string]Credential `json:"servers"`
}

// ConfigPath is <user config dir>/outpost/config.json.
func ConfigPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("locate config directory: %w", err)
	}
	return filepath.Join(dir, "outpost", "config.json"), nil
}

// LoadConfig reads the saved config; a missing file is an empty config.
func LoadConfig() (*Config, error) {
	c := &Config{Servers: map[string]Credential{}}
	p, err := ConfigPath()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("parse %s: %w", p, err)
	}
	if c.Servers == nil {
		c.Servers = map[string]Credential{}
	}
	return c, nil
}

// Save writes the config with mode 0600, atomically.
func (c *Config) Save() error {
	p, err := ConfigPath()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(p, b, 0o600); err != nil {
		return err
	}
	return nil
}
