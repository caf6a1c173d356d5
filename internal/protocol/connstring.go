package protocol

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// ConnectionString tells a connected registry who it is and how to reach
// its parent:
//
//	ConnectedRegistryName=<name>;SyncTokenName=<token>;SyncTokenPassword=<password>;ParentGatewayEndpoint=<host[:port]>;ParentEndpointProtocol=<https|http>
type ConnectionString struct {
	ConnectedRegistryName  string
	SyncTokenName          string
	SyncTokenPassword      string
	ParentGatewayEndpoint  string
	ParentEndpointProtocol string
}

// ErrConnectionString reports a malformed connection string.
var ErrConnectionString = errors.New("invalid connection string")

var connKeys = []string{"ConnectedRegistryName", "SyncTokenName", "SyncTokenPassword", "ParentGatewayEndpoint", "ParentEndpointProtocol"}

// String renders the connection string.
func (c ConnectionString) String() string {
	return "ConnectedRegistryName=" + c.ConnectedRegistryName +
		";SyncTokenName=" + c.SyncTokenName +
		";SyncTokenPassword=" + c.SyncTokenPassword +
		";ParentGatewayEndpoint=" + c.ParentGatewayEndpoint +
		";ParentEndpointProtocol=" + c.ParentEndpointProtocol
}

// ParentURL is the parent's base URL.
func (c ConnectionString) ParentURL() string {
	return c.ParentEndpointProtocol + "://" + c.ParentGatewayEndpoint
}

// ParseConnectionString parses a connection string. Pairs are separated by
// ';' and split on their first '=' (a password may hold '='); every key is
// required exactly once and unknown keys are refused.
func ParseConnectionString(s string) (ConnectionString, error) {
	s = strings.TrimSpace(s)
	var c ConnectionString
	seen := map[string]bool{}
	for i, pair := range strings.Split(s, ";") {
		if pair == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return ConnectionString{}, fmt.Errorf("%w: part %d (%d characters) is not key=value", ErrConnectionString, i+1, len(pair))
		}
		if !slices.Contains(connKeys, k) {
			return ConnectionString{}, fmt.Errorf("%w: unknown key %s in part %d (want %s)", ErrConnectionString, shownKey(k), i+1, strings.Join(connKeys, ", "))
		}
		if seen[k] {
			return ConnectionString{}, fmt.Errorf("%w: key %q given twice", ErrConnectionString, k)
		}
		seen[k] = true
		switch k {
		case "ConnectedRegistryName":
			c.ConnectedRegistryName = v
		case "SyncTokenName":
			c.SyncTokenName = v
		case "SyncTokenPassword":
			c.SyncTokenPassword = v
		case "ParentGatewayEndpoint":
			c.ParentGatewayEndpoint = v
		case "ParentEndpointProtocol":
			c.ParentEndpointProtocol = v
		}
	}
	var missing []string
	for _, k := range connKeys {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return ConnectionString{}, fmt.Errorf("%w: missing %s", ErrConnectionString, strings.Join(missing, ", "))
	}
	if err := ValidateName(c.ConnectedRegistryName); err != nil {
		return ConnectionString{}, fmt.Errorf("%w: ConnectedRegistryName: %w", ErrConnectionString, err)
	}
	if c.SyncTokenName == "" || c.SyncTokenPassword == "" || c.ParentGatewayEndpoint == "" {
		return ConnectionString{}, fmt.Errorf("%w: SyncTokenName, SyncTokenPassword and ParentGatewayEndpoint must not be empty", ErrConnectionString)
	}
	if strings.ContainsAny(c.ParentGatewayEndpoint, "/?#@ ") {
		return ConnectionString{}, fmt.Errorf("%w: ParentGatewayEndpoint %q: want host[:port]", ErrConnectionString, c.ParentGatewayEndpoint)
	}
	if c.ParentEndpointProtocol != "https" && c.ParentEndpointProtocol != "http" {
		return ConnectionString{}, fmt.Errorf("%w: ParentEndpointProtocol %q: want https or http", ErrConnectionString, c.ParentEndpointProtocol)
	}
	return c, nil
}

// shownKey is an unknown key as an error shows it: quoted when it is a
// word of at most 40 letters (a misspelt key), else not at all, since a
// damaged string may put a piece of the password before an '='.
func shownKey(k string) string {
	if k == "" || len(k) > 40 || strings.ContainsFunc(k, func(r rune) bool { return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') }) {
		return "(not shown)"
	}
	return strconv.Quote(k)
}
