// Package client talks to an Outpost server's management API on behalf of
// the CLI, and keeps the credentials saved by `outpost login`.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/outpost-registry/outpost/internal/origin"
	"github.com/outpost-registry/outpost/internal/pki"
)

// Client calls one server's /api/v1/ routes with Basic credentials.
type Client struct {
	base     *url.URL
	username string
	password string
	http     *http.Client
}

// NormalizeServer turns "host:port" into "https://host:port" and checks
// the URL.
func NormalizeServer(s string) (string, error) {
	if s == "" {
		return "", errors.New("no server: run `outpost login <server>` or set OUTPOST_SERVER")
	}
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("server %q: want [https://]host[:port]", s)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host, "/"), nil
}

// New returns a client for server. caFile, when set, adds a CA to the
// system roots for HTTPS.
func New(server, username, password, caFile string) (*Client, error) {
	s, err := NormalizeServer(server)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(s)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pool, err := pki.RootsWithCA(caFile)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	// The credentials go to this server only: a redirect elsewhere (even
	// to another port of the same host) fails instead of carrying them.
	policy, err := origin.NewPolicy(u, nil, "")
	if err != nil {
		return nil, err
	}
	return &Client{base: u, username: username, password: password, http: &http.Client{Transport: policy.Transport(tr), Timeout: 60 * time.Second}}, nil
}

// Server returns the server's base URL.
func (c *Client) Server() string { return c.base.String() }

// APIError is an error answer of the management API.
type APIError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *APIError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("%s (%d %s)", e.Message, e.Status, e.Code)
	}
	return fmt.Sprintf("%s (%d)", e.Message, e.Status)
}

// Do sends a JSON request and decodes the JSON answer into out.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.username != "" {
		req.SetBasicAuth(c.username, c.password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return decodeError(resp.StatusCode, data)
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// CheckLogin verifies credentials against the registry's /v2/ endpoint.
func (c *Client) CheckLogin(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base.String()+"/v2/", nil)
	if err != nil {
		return err
	}
	req.SetBasicAuth(c.username, c.password)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("contact %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return nil
	case http.StatusUnauthorized:
		return errors.New("login failed: invalid username or password")
	case http.StatusTooManyRequests:
		return fmt.Errorf("login refused: too many failed attempts, retry after %s s", resp.Header.Get("Retry-After"))
	default:
		return fmt.Errorf("login failed: %s answered %s", c.base, resp.Status)
	}
}
