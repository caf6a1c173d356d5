package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/outpost-registry/outpost/internal/pki"
)

// In-cluster paths of a pod's service account credentials, as the
// chart's projected volume lays them out.
const (
	DefaultKubeTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultKubeCAFile    = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
)

// KubeNode reads a node's labels from the Kubernetes API (GET
// /api/v1/nodes/{name}), so that a job's node selector can be matched:
// the downward API does not expose node labels. It needs only "get" on
// nodes.
type KubeNode struct {
	// Server is the API server's URL (default: from
	// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT).
	Server string
	// TokenFile holds the bearer token, reread on every call (projected
	// tokens rotate).
	TokenFile string
	// CAFile is the API server's CA.
	CAFile string
	http   *http.Client
}

// NewKubeNode prepares a reader; empty fields take the in-cluster
// defaults.
func NewKubeNode(server, tokenFile, caFile string) (*KubeNode, error) {
	k := &KubeNode{Server: server, TokenFile: tokenFile, CAFile: caFile}
	if k.Server == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, fmt.Errorf("%w: no Kubernetes API server: KUBERNETES_SERVICE_HOST is not set (not in a pod?)", ErrInvalidOptions)
		}
		k.Server = "https://" + net.JoinHostPort(host, port)
	}
	if k.TokenFile == "" {
		k.TokenFile = DefaultKubeTokenFile
	}
	if k.CAFile == "" {
		k.CAFile = DefaultKubeCAFile
	}
	pool, err := pki.RootsWithCA(k.CAFile)
	if err != nil {
		return nil, fmt.Errorf("kubernetes API CA: %w", err)
	}
	k.http = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment}}
	return k, nil
}

// Labels returns the labels of node.
func (k *KubeNode) Labels(ctx context.Context, node string) (map[string]string, error) {
	tok, err := os.ReadFile(k.TokenFile)
	if err != nil {
		return nil, fmt.Errorf("kubernetes token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(k.Server, "/")+"/api/v1/nodes/"+url.PathEscape(node), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	req.Header.Set("Accept", "application/json")
	resp, err := k.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get node %s: %w", node, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("get node %s from the Kubernetes API: %s (the agent needs get on nodes: chart value prePull.nodeLabels)", node, resp.Status)
	}
	var n struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&n); err != nil {
		return nil, fmt.Errorf("decode node %s: %w", node, err)
	}
	if n.Metadata.Labels == nil {
		n.Metadata.Labels = map[string]string{}
	}
	return n.Metadata.Labels, nil
}
