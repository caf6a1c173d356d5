// Package depcheck holds no code: its test enforces the import rules of
// docs/architecture.md (imports point inward, towards oci; storage and
// syncer never import the HTTP server side).
package depcheck
