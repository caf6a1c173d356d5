package protocol

// The bodies of the connected-registry and staging routes of the
// management API (docs/api.md), which the CLI sends.

// CreateRequest is the body of POST /api/v1/connected-registries.
type CreateRequest struct {
	Name           string   `json:"name"`
	Mode           string   `json:"mode,omitempty"`
	Parent         string   `json:"parent,omitempty"`
	Repositories   []string `json:"repositories"`
	ClientTokens   []string `json:"clientTokens,omitempty"`
	SyncSchedule   string   `json:"syncSchedule,omitempty"`
	SyncWindow     string   `json:"syncWindow,omitempty"`
	SyncMessageTTL string   `json:"syncMessageTtl,omitempty"`
	LogLevel       string   `json:"logLevel,omitempty"`
	Notifications  []string `json:"notifications,omitempty"`
}

// CreateAnswer is the answer of POST /api/v1/connected-registries: the
// connected registry, and notes on what was changed besides it (an
// existing sync token re-bound or enabled).
type CreateAnswer struct {
	*ConnectedRegistry
	Notes []string `json:"notes,omitempty"`
}

// Update is the body of PATCH /api/v1/connected-registries/{name}: a
// change of settings; nil or empty fields are kept.
type Update struct {
	Mode               string   `json:"mode,omitempty"`
	SyncSchedule       string   `json:"syncSchedule,omitempty"`
	SyncWindow         *string  `json:"syncWindow,omitempty"`
	SyncMessageTTL     string   `json:"syncMessageTtl,omitempty"`
	LogLevel           string   `json:"logLevel,omitempty"`
	AddClientTokens    []string `json:"addClientTokens,omitempty"`
	RemoveClientTokens []string `json:"removeClientTokens,omitempty"`
	AddNotifications   []string `json:"addNotifications,omitempty"`
	RemoveNotif        []string `json:"removeNotifications,omitempty"`
	AddRepositories    []string `json:"addRepositories,omitempty"`
	RemoveRepositories []string `json:"removeRepositories,omitempty"`
}

// SettingsRequest is the body of POST …/{name}/settings.
type SettingsRequest struct {
	ParentProtocol   string `json:"parentProtocol"`
	GeneratePassword int    `json:"generatePassword,omitempty"`
}

// Settings is the answer of get-settings.
type Settings struct {
	ConnectionString string `json:"connectionString"`
	SyncTokenName    string `json:"syncTokenName"`
	// Password is set only when one was generated.
	Password string `json:"syncTokenPassword,omitempty"`
	Note     string `json:"note,omitempty"`
}

// StagingRequest is the body of POST /api/v1/staging.
type StagingRequest struct {
	Name          string   `json:"name"`
	Targets       []string `json:"connectedRegistries"`
	Images        []string `json:"images"`
	RespectWindow bool     `json:"respectWindow,omitempty"`
	// PrePull and NodeSelector: see StagingJob.
	PrePull      bool              `json:"prePull,omitempty"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// NodeTokenRequest is the body of POST …/{name}/node-token.
type NodeTokenRequest struct {
	// GeneratePassword is the password slot to (re)generate, 1 or 2
	// (default 1).
	GeneratePassword int `json:"generatePassword"`
}

// NodeToken is the answer of POST …/{name}/node-token.
type NodeToken struct {
	TokenName string `json:"tokenName"`
	Password  string `json:"password"`
	ScopeMap  string `json:"scopeMap"`
}

// InstallRequest is the body of POST /api/v1/staging/{name}/installed.
type InstallRequest struct {
	// Targets are the sites the release is installed at (default: every
	// target of the job).
	Targets []string `json:"connectedRegistries,omitempty"`
	// Keep is how many releases stay assigned to each site, the installed
	// one included (default DefaultKeep).
	Keep int `json:"keep,omitempty"`
}

// DefaultKeep keeps the installed release and the one installed before
// it, for rollback.
const DefaultKeep = 2
