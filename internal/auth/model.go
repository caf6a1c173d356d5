// Package auth is Outpost's identity layer: scope maps (repository-scoped
// actions), tokens with two rotatable passwords, the admin user, the
// Docker registry token protocol (challenges and /oauth2/token with signed
// JWTs), Basic credentials, and limits on failed logins.
package auth

import "github.com/outpost-registry/outpost/internal/identity"

// The identity model is plain data in the identity leaf, so that the
// edge↔parent protocol can carry tokens and scope maps without importing
// auth; these names keep auth the one place callers look for it.
type (
	// Action is a permission on repositories.
	Action = identity.Action
	// RepositoryGrant grants actions on the repositories matching a pattern.
	RepositoryGrant = identity.RepositoryGrant
	// ScopeMap is a named list of repository grants.
	ScopeMap = identity.ScopeMap
	// TokenStatus is enabled or disabled.
	TokenStatus = identity.TokenStatus
	// PasswordName is password1 or password2.
	PasswordName = identity.PasswordName
	// Password is one stored password of a token: only its hash.
	Password = identity.Password
	// Token is a named credential bound to a scope map.
	Token = identity.Token
)

// The repository actions a scope map can grant.
const (
	ContentRead   = identity.ContentRead
	ContentWrite  = identity.ContentWrite
	ContentDelete = identity.ContentDelete
	MetadataRead  = identity.MetadataRead
	MetadataWrite = identity.MetadataWrite
)

// RepositoryActions lists every repository action, in canonical order.
var RepositoryActions = identity.RepositoryActions

// Sentinel errors (the identity model's: a value of one is a value of the
// other).
var (
	ErrNotFound     = identity.ErrNotFound
	ErrExists       = identity.ErrExists
	ErrInvalid      = identity.ErrInvalid
	ErrReadOnly     = identity.ErrReadOnly
	ErrUnauthorized = identity.ErrUnauthorized
	ErrInUse        = identity.ErrInUse
)

// Built-in scope maps, read-only.
const (
	ScopeMapPull  = identity.ScopeMapPull
	ScopeMapPush  = identity.ScopeMapPush
	ScopeMapAdmin = identity.ScopeMapAdmin
)

// Token statuses.
const (
	StatusEnabled  = identity.StatusEnabled
	StatusDisabled = identity.StatusDisabled
)

// The two password slots of a token.
const (
	Password1 = identity.Password1
	Password2 = identity.Password2
)

// ParseAction checks that s is a known action.
func ParseAction(s string) (Action, error) { return identity.ParseAction(s) }

// ParseTokenStatus accepts enabled or disabled.
func ParseTokenStatus(s string) (TokenStatus, error) { return identity.ParseTokenStatus(s) }

// BuiltInScopeMaps returns the read-only scope maps every registry has.
func BuiltInScopeMaps() []*ScopeMap { return identity.BuiltInScopeMaps() }
