package agent

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultCRISocket is containerd's socket on a node, which serves the
// CRI image service (the kubelet's way in).
const DefaultCRISocket = "/run/containerd/containerd.sock"

// CRI is a node's container runtime reached through the CRI image
// service (k8s.io/cri-api) on its unix socket. containerd's CRI plugin
// keeps the images it pulls in its k8s.io namespace, where the kubelet
// finds them; it picks the node's platform from an index, reads the
// node's certs.d (hosts.toml and the CA the trust agent writes) and
// takes the credentials from the request.
type CRI struct {
	socket string
	conn   *grpc.ClientConn
	images runtimeapi.ImageServiceClient
	rt     runtimeapi.RuntimeServiceClient
}

// DialCRI prepares a client of the CRI socket; it connects on first use,
// so an unreachable socket is reported by the first call.
func DialCRI(socket string) (*CRI, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("cri socket %s: %w", socket, err)
	}
	return &CRI{socket: socket, conn: conn, images: runtimeapi.NewImageServiceClient(conn), rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// Close closes the connection.
func (c *CRI) Close() error { return c.conn.Close() }

// Pull pulls ref (host/repository@digest) with basic credentials.
func (c *CRI) Pull(ctx context.Context, ref, username, password string) error {
	req := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}
	if username != "" {
		req.Auth = &runtimeapi.AuthConfig{Username: username, Password: password}
	}
	if _, err := c.images.PullImage(ctx, req); err != nil {
		return fmt.Errorf("cri pull %s (socket %s): %w", ref, c.socket, err)
	}
	return nil
}

// Has reports whether the runtime holds ref (host/repository@digest)
// under that very digest: ImageStatus must list it among the image's
// repo digests.
func (c *CRI) Has(ctx context.Context, ref string) (bool, error) {
	resp, err := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return false, fmt.Errorf("cri image status %s (socket %s): %w", ref, c.socket, err)
	}
	return resp.GetImage() != nil && slices.Contains(resp.GetImage().GetRepoDigests(), ref), nil
}

// Version asks the runtime its name and version (doctor's check).
func (c *CRI) Version(ctx context.Context) (string, error) {
	v, err := c.rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "", fmt.Errorf("cri version (socket %s): %w", c.socket, err)
	}
	return v.GetRuntimeName() + " " + v.GetRuntimeVersion() + " (CRI " + v.GetRuntimeApiVersion() + ")", nil
}
