package cli

import (
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/outpost-registry/outpost/internal/client"
)

// clientOptions select the server and credentials of a client command:
// flags, then OUTPOST_SERVER / OUTPOST_USERNAME / OUTPOST_PASSWORD, then
// the login saved by `outpost login`.
type clientOptions struct {
	server string
	caFile string
}

func (o *clientOptions) bind(fs *pflag.FlagSet) {
	fs.StringVar(&o.server, "server", "", "server URL or host:port (default: $OUTPOST_SERVER, else the last outpost login)")
	fs.StringVar(&o.caFile, "ca-file", "", "CA certificate to trust for the server, in addition to the system roots")
}

// client builds an API client from the options.
func (o *clientOptions) client() (*client.Client, error) {
	return newClient(o.server, o.caFile, "", "")
}

// newClient builds an API client for server (default: $OUTPOST_SERVER,
// else the last `outpost login`). The credential is username and password
// when given, else OUTPOST_USERNAME / OUTPOST_PASSWORD, else the one saved
// for that server; the CA is caFile, else the one saved with that login.
func newClient(server, caFile, username, password string) (*client.Client, error) {
	cfg, err := client.LoadConfig()
	if err != nil {
		return nil, err
	}
	if server == "" {
		server = os.Getenv("OUTPOST_SERVER")
	}
	if server == "" {
		server = cfg.Current
	}
	server, err = client.NormalizeServer(server)
	if err != nil {
		return nil, err
	}
	cred := cfg.Servers[server]
	if u := os.Getenv("OUTPOST_USERNAME"); u != "" {
		cred.Username = u
	}
	if p := os.Getenv("OUTPOST_PASSWORD"); p != "" {
		cred.Password = p
	}
	if username != "" {
		cred.Username, cred.Password = username, password
	}
	ca := caFile
	if ca == "" {
		ca = cred.CAFile
	}
	return client.New(server, cred.Username, cred.Password, ca)
}

// defaultServer is the server of a client command without --server:
// $OUTPOST_SERVER, else the last `outpost login` ("" when neither).
func defaultServer() (string, error) {
	if s := os.Getenv("OUTPOST_SERVER"); s != "" {
		return client.NormalizeServer(s)
	}
	cfg, err := client.LoadConfig()
	if err != nil || cfg.Current == "" {
		return "", err
	}
	return client.NormalizeServer(cfg.Current)
}

// call sends one management API request and renders its answer, decoded
// as T, with the command's output options.
func call[T any](cmd *cobra.Command, co *clientOptions, oo *outputOptions, method, path string, body any, t table) error {
	if err := checkQuery[T](oo); err != nil {
		return err
	}
	c, err := co.client()
	if err != nil {
		return err
	}
	var out T
	if err := c.Do(cmd.Context(), method, path, body, &out); err != nil {
		return err
	}
	return oo.render(cmd.OutOrStdout(), out, t)
}
