package agent

import (
	"fmt"
	"strings"
)

// renderHosts renders a containerd hosts.toml whose server is server and
// whose only host is Outpost at host, verified with the CA at caPath
// (relative to the host directory). containerd 1.6 rejects a file without a [host."…"] table
// ("invalid host tree") and then silently falls back to plain HTTP, so
// the table is always written, even when server is the host itself.
func renderHosts(comment, server, host, caPath string) []byte {
	var b strings.Builder
	for _, line := range strings.Split(comment, "\n") {
		fmt.Fprintf(&b, "# %s\n", line)
	}
	fmt.Fprintf(&b, "server = %s\n\n", tomlString(server))
	fmt.Fprintf(&b, "[host.%s]\n", tomlString("https://"+host))
	b.WriteString("  capabilities = [\"pull\", \"resolve\"]\n")
	fmt.Fprintf(&b, "  ca = %s\n", tomlString(caPath))
	return []byte(b.String())
}

// ownHosts is the hosts.toml of Outpost's own host directory.
func ownHosts(host, caPath string) []byte {
	return renderHosts(fmt.Sprintf("Written by `outpost trust install`: containerd verifies %s with its CA.\n"+
		"`outpost trust uninstall` removes this file.", host), "https://"+host, host, caPath)
}

// aliasHosts is the hosts.toml of the directory named alias, the other
// spelling of host (with or without :443).
func aliasHosts(alias, host, caPath string) []byte {
	return renderHosts(fmt.Sprintf("Written by `outpost trust install`: containerd verifies %s (%s without or with\n"+
		"the default port) with its CA. `outpost trust uninstall` removes this file.", alias, host),
		"https://"+alias, alias, caPath)
}

// mirrorHosts is the hosts.toml that makes Outpost a mirror of upstream.
func mirrorHosts(upstream, host, caPath string) []byte {
	return renderHosts(fmt.Sprintf("Written by `outpost trust install`: containerd pulls %s images from Outpost at %s\n"+
		"first and falls back to %s. `outpost trust uninstall` removes this file.",
		upstream, host, upstreamServer(upstream)), upstreamServer(upstream), host, caPath)
}

// tomlString quotes s as a TOML basic string (TOML 1.0 §String).
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
