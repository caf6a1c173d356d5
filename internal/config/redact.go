package config

import (
	"net/url"
	"strings"
)

// RedactedText replaces a secret in printed configuration.
const RedactedText = "<redacted>"

// Redacted returns a copy of c that is safe to print: the sync token
// password of the connection string, any password in the parent URL and
// the password of a PostgreSQL DSN are replaced by RedactedText. The
// other secrets (admin password, parent password, TLS key, S3 keys) are
// given as file paths, which are kept.
func (c Config) Redacted() Config {
	c.ConnectionString = RedactConnectionString(c.ConnectionString)
	c.Parent.URL = RedactURL(c.Parent.URL)
	c.Storage.Metadata.DSN = RedactDSN(c.Storage.Metadata.DSN)
	return c
}

// RedactDSN returns a PostgreSQL DSN with its password replaced by
// RedactedText, in URL form (postgres://user:pw@host/db) or keyword form
// (host=h password=pw).
func RedactDSN(s string) string {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return RedactURL(s)
	}
	f := strings.Fields(s)
	for i, kv := range f {
		if k, _, ok := strings.Cut(kv, "="); ok && strings.TrimSpace(k) == "password" {
			f[i] = "password=" + RedactedText
		} else if !ok && i > 0 && strings.HasSuffix(f[i-1], "=") {
			f[i] = RedactedText // "password= pw" spacing
		}
	}
	return strings.Join(f, " ")
}

// connStringPublic are the connection-string keys whose values may be
// printed; every other value, SyncTokenPassword and unknown keys alike,
// is redacted.
var connStringPublic = []string{"ConnectedRegistryName", "SyncTokenName", "ParentGatewayEndpoint", "ParentEndpointProtocol"}

// RedactConnectionString returns s with the value of every key but the
// public ones replaced by RedactedText, and any part that is not
// key=value replaced as a whole (it may be a piece of a password).
func RedactConnectionString(s string) string {
	if s == "" {
		return ""
	}
	parts := strings.Split(s, ";")
	for i, p := range parts {
		if strings.TrimSpace(p) == "" {
			continue
		}
		k, _, ok := strings.Cut(p, "=")
		public := false
		for _, pk := range connStringPublic {
			public = public || strings.TrimSpace(k) == pk
		}
		switch {
		case !ok:
			parts[i] = RedactedText
		case !public:
			parts[i] = k + "=" + RedactedText
		}
	}
	return strings.Join(parts, ";")
}

// RedactURL returns s with the password of its user information replaced
// by RedactedText; a string that does not parse as a URL but may hold
// user information is replaced as a whole.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if strings.Contains(s, "@") {
			return RedactedText
		}
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), RedactedText)
		return strings.Replace(u.String(), url.QueryEscape(RedactedText), RedactedText, 1)
	}
	return s
}
