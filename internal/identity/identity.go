// Package identity holds the plain data of Outpost's identity model:
// repository actions, scope maps, and tokens with their two password
// slots (hashes only). It performs no I/O. auth stores and checks these
// values; the edge↔parent protocol carries them to connected registries,
// which is why they live in a leaf of their own.
package identity

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/outpost-registry/outpost/internal/oci"
)

// Action is a permission on repositories.
type Action string

// The repository actions a scope map can grant.
const (
	ContentRead    Action = "content/read"
	ContentWrite   Action = "content/write"
	ContentDelete  Action = "content/delete"
	MetadataRead   Action = "metadata/read"
	MetadataWrite  Action = "metadata/write"
	maxRepoEntries        = 500
)

// RepositoryActions lists every repository action, in canonical order.
var RepositoryActions = []Action{ContentRead, ContentWrite, ContentDelete, MetadataRead, MetadataWrite}

// Sentinel errors.
var (
	ErrNotFound     = errors.New("not found")
	ErrExists       = errors.New("already exists")
	ErrInvalid      = errors.New("invalid")
	ErrReadOnly     = errors.New("read-only")
	ErrUnauthorized = errors.New("unauthorized")
	ErrInUse        = errors.New("in use")
)

// ParseAction checks that s is a known action.
func ParseAction(s string) (Action, error) {
	a := Action(s)
	if slices.Contains(RepositoryActions, a) || isGatewayAction(s) {
		return a, nil
	}
	return "", fmt.Errorf("%w: action %q: want one of content/read, content/write, content/delete, metadata/read, metadata/write", ErrInvalid, s)
}

// isGatewayAction recognises gateway/<name>/{config,message}/{read,write},
// the actions of connected-registry sync tokens, and
// gateway/<name>/nodes/write, that of a site's node token (its node
// agents leasing pull slots and reporting pre-pull progress).
func isGatewayAction(s string) bool {
	parts := strings.Split(s, "/")
	if len(parts) != 4 || parts[0] != "gateway" || parts[1] == "" {
		return false
	}
	if parts[2] == "nodes" {
		return parts[3] == "write"
	}
	return (parts[2] == "config" || parts[2] == "message") && (parts[3] == "read" || parts[3] == "write")
}

// RepositoryGrant grants actions on the repositories matching a pattern:
// an exact name, a name ending in "/*" (everything below it), or "*".
type RepositoryGrant struct {
	Repository string   `json:"repository"`
	Actions    []Action `json:"actions"`
}

// Matches reports whether the grant's pattern covers repo.
func (g RepositoryGrant) Matches(repo string) bool { return oci.MatchRepository(g.Repository, repo) }

// validatePattern checks a repository pattern.
func validatePattern(p string) error {
	if p == "*" {
		return nil
	}
	name := strings.TrimSuffix(p, "/*")
	if err := oci.ValidateName(name); err != nil {
		return fmt.Errorf("%w: repository %q: %w", ErrInvalid, p, err)
	}
	return nil
}

// ScopeMap is a named list of repository grants.
type ScopeMap struct {
	Name         string            `json:"name"`
	Description  string            `json:"description,omitempty"`
	Repositories []RepositoryGrant `json:"repositories"`
	// Gateway lists non-repository actions (gateway/<name>/…).
	Gateway  []Action  `json:"gatewayActions,omitempty"`
	BuiltIn  bool      `json:"builtIn"`
	Created  time.Time `json:"creationDate"`
	Modified time.Time `json:"lastModified"`
}

// Allows reports whether the scope map grants action a on repo.
func (m *ScopeMap) Allows(repo string, a Action) bool {
	for _, g := range m.Repositories {
		if g.Matches(repo) && slices.Contains(g.Actions, a) {
			return true
		}
	}
	return false
}

// AllowsGateway reports whether the scope map grants a gateway action.
func (m *ScopeMap) AllowsGateway(a Action) bool { return slices.Contains(m.Gateway, a) }

// Validate checks the scope map's fields.
func (m *ScopeMap) Validate() error {
	var errs []error
	if err := ValidateResourceName(m.Name); err != nil {
		errs = append(errs, fmt.Errorf("name: %w", err))
	}
	if len(m.Repositories) > maxRepoEntries {
		errs = append(errs, fmt.Errorf("%w: repositories: %d entries, at most %d", ErrInvalid, len(m.Repositories), maxRepoEntries))
	}
	seen := map[string]bool{}
	for _, g := range m.Repositories {
		if err := validatePattern(g.Repository); err != nil {
			errs = append(errs, err)
		}
		if seen[g.Repository] {
			errs = append(errs, fmt.Errorf("%w: repository %q is listed twice", ErrInvalid, g.Repository))
		}
		seen[g.Repository] = true
		if len(g.Actions) == 0 {
			errs = append(errs, fmt.Errorf("%w: repository %q has no actions", ErrInvalid, g.Repository))
		}
		for _, a := range g.Actions {
			if !slices.Contains(RepositoryActions, a) {
				errs = append(errs, fmt.Errorf("%w: repository %q: action %q: want one of content/read, content/write, content/delete, metadata/read, metadata/write", ErrInvalid, g.Repository, a))
			}
		}
	}
	for _, a := range m.Gateway {
		if !isGatewayAction(string(a)) {
			errs = append(errs, fmt.Errorf("%w: gateway action %q", ErrInvalid, a))
		}
	}
	return errors.Join(errs...)
}

// ValidateResourceName accepts names of 5–50 letters, digits, '-' and '_'
// (a leading '_' is reserved for built-in scope maps).
func ValidateResourceName(n string) error {
	if len(n) < 5 || len(n) > 50 {
		return fmt.Errorf("%w: %q must be 5 to 50 characters", ErrInvalid, n)
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("%w: %q may hold only letters, digits, '-' and '_'", ErrInvalid, n)
		}
	}
	return nil
}

// Built-in scope maps, read-only.
const (
	ScopeMapPull  = "_repositories_pull"
	ScopeMapPush  = "_repositories_push"
	ScopeMapAdmin = "_repositories_admin"
)

// BuiltInScopeMaps returns the read-only scope maps every registry has.
func BuiltInScopeMaps() []*ScopeMap {
	mk := func(name, desc string, actions ...Action) *ScopeMap {
		return &ScopeMap{Name: name, Description: desc, BuiltIn: true,
			Repositories: []RepositoryGrant{{Repository: "*", Actions: actions}}}
	}
	return []*ScopeMap{
		mk(ScopeMapPull, "Can perform all read operations in the registry", ContentRead, MetadataRead),
		mk(ScopeMapPush, "Can perform all read and write operations in the registry", ContentRead, MetadataRead, ContentWrite, MetadataWrite),
		mk(ScopeMapAdmin, "Can perform all read, write and delete operations in the registry", RepositoryActions...),
	}
}

// TokenStatus is enabled or disabled.
type TokenStatus string

// Token statuses.
const (
	StatusEnabled  TokenStatus = "enabled"
	StatusDisabled TokenStatus = "disabled"
)

// ParseTokenStatus accepts enabled or disabled.
func ParseTokenStatus(s string) (TokenStatus, error) {
	switch TokenStatus(strings.ToLower(s)) {
	case StatusEnabled:
		return StatusEnabled, nil
	case StatusDisabled:
		return StatusDisabled, nil
	}
	return "", fmt.Errorf("%w: status %q: want enabled or disabled", ErrInvalid, s)
}

// PasswordName is password1 or password2.
type PasswordName string

// The two password slots of a token.
const (
	Password1 PasswordName = "password1"
	Password2 PasswordName = "password2"
)

// Password is one stored password of a token: only its hash.
type Password struct {
	Name    PasswordName `json:"name"`
	Hash    string       `json:"hash"`
	Created time.Time    `json:"creationTime"`
	Expiry  *time.Time   `json:"expiry,omitempty"`
}

// Expired reports whether the password has expired at now.
func (p *Password) Expired(now time.Time) bool {
	return p.Expiry != nil && !now.Before(*p.Expiry)
}

// Token is a named credential bound to a scope map.
type Token struct {
	Name      string      `json:"name"`
	ScopeMap  string      `json:"scopeMapName"`
	Status    TokenStatus `json:"status"`
	Created   time.Time   `json:"creationDate"`
	Passwords []Password  `json:"passwords,omitempty"`
	// Relay marks a token a gateway keeps only to hand it down to the
	// connected registries below it (their client tokens): it never
	// authenticates at the gateway itself.
	Relay bool `json:"relay,omitempty"`
}

// Password returns the slot n, or nil.
func (t *Token) Password(n PasswordName) *Password {
	for i := range t.Passwords {
		if t.Passwords[i].Name == n {
			return &t.Passwords[i]
		}
	}
	return nil
}
