package auth

// The bodies of the scope-map and token routes of the management API
// (docs/api.md), which the CLI sends; TokenView is their answer.

// ScopeMapRequest creates a scope map.
type ScopeMapRequest struct {
	Name         string            `json:"name"`
	Description  string            `json:"description,omitempty"`
	Repositories []RepositoryGrant `json:"repositories"`
}

// ScopeMapUpdate changes a scope map: the description, and actions added
// to or removed from repositories (a repository left without actions is
// removed).
type ScopeMapUpdate struct {
	Description *string           `json:"description,omitempty"`
	Add         []RepositoryGrant `json:"addRepositories,omitempty"`
	Remove      []RepositoryGrant `json:"removeRepositories,omitempty"`
}

// TokenRequest creates a token bound to an existing scope map, or to a new
// scope map "<name>-scope-map" built from Repositories.
type TokenRequest struct {
	Name             string            `json:"name"`
	ScopeMap         string            `json:"scopeMapName,omitempty"`
	Repositories     []RepositoryGrant `json:"repositories,omitempty"`
	Status           string            `json:"status,omitempty"`
	ExpirationInDays int               `json:"expirationInDays,omitempty"`
	// NoPasswords creates the token without passwords; generate them later.
	NoPasswords bool `json:"noPasswords,omitempty"`
}

// TokenUpdate changes a token's scope map or status.
type TokenUpdate struct {
	ScopeMap string `json:"scopeMapName,omitempty"`
	Status   string `json:"status,omitempty"`
}

// CredentialRequest generates one password of a token.
type CredentialRequest struct {
	Password         string `json:"password"`
	ExpirationInDays int    `json:"expirationInDays,omitempty"`
}
