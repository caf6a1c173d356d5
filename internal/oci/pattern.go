package oci

import "strings"

// MatchRepository reports whether a repository pattern covers the
// repository name repo. A pattern is "*" (every repository), a name
// ending in "/*" (every repository below that name, at any depth, but not
// the name itself), or an exact name. It is the one matcher of the
// repository patterns of scope maps, sync scopes and notifications.
func MatchRepository(pattern, repo string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "/*"):
		return strings.HasPrefix(repo, pattern[:len(pattern)-1])
	default:
		return pattern == repo
	}
}
