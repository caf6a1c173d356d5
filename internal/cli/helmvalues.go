package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/outpost-registry/outpost/internal/atomicfile"
	"github.com/outpost-registry/outpost/internal/helmvalues"
)

// helmValuesOptions are the flags of `outpost helm-values`.
type helmValuesOptions struct {
	settings  string
	protected string
	out       string
}

func newHelmValuesCommand() *cobra.Command {
	o := &helmValuesOptions{}
	cmd := &cobra.Command{
		Use:   "helm-values --settings FILE [--protected-settings FILE] [--out FILE]",
		Short: "Convert connected-registry extension settings files into values of the Helm chart",
		Long: `Convert the settings files of the connected-registry extension into values
of the chart deploy/helm/outpost, for helm install -f.

The files are JSON objects with dotted keys and string values, as the
extension's tutorials write them:
  {"connectionString": "…", "service.clusterIP": "192.100.100.1",
   "cert-manager.enabled": "false", "tls.crt": "<base64>", "tls.key": "<base64>", "tls.cacrt": "<base64>"}
Helm would read "service.clusterIP" as one literal top-level key. This command
nests the keys, makes "true"/"false" booleans and ports numbers, and fails on
any key the chart does not know (docs/kubernetes.md lists them) or a key the
two files give different values. Nested keys are accepted as well.

With --out the values are written to FILE with mode 0600 (they hold the
connection string and any TLS key), replacing it atomically; otherwise to
standard output.`,
		Example: `  outpost helm-values --settings settings.json --protected-settings protected-settings-extension.json --out values.yaml
  helm install outpost deploy/helm/outpost -n connected-registry --create-namespace -f values.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.settings, "settings", "", "settings file: a JSON object of the extension's configuration settings (dotted keys)")
	f.StringVar(&o.protected, "protected-settings", "", "protected settings file (the extension's --config-protected-file), such as the one holding connectionString and tls.key")
	f.StringVar(&o.out, "out", "", "write the values to this file (mode 0600) instead of standard output")
	return cmd
}

func (o *helmValuesOptions) run(cmd *cobra.Command) error {
	if o.settings == "" && o.protected == "" {
		return errors.New("helm-values: give --settings FILE, --protected-settings FILE or both")
	}
	var files []helmvalues.File
	for _, name := range []string{o.settings, o.protected} {
		if name == "" {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("helm-values: %w", err)
		}
		files = append(files, helmvalues.File{Name: name, Data: b})
	}
	values, err := helmvalues.Convert(files...)
	if err != nil {
		return fmt.Errorf("helm-values:\n%w", err)
	}
	b, err := helmvalues.Marshal(values)
	if err != nil {
		return fmt.Errorf("helm-values: %w", err)
	}
	if o.out == "" {
		_, err := cmd.OutOrStdout().Write(b)
		return err
	}
	if err := atomicfile.Write(o.out, b, 0o600); err != nil {
		return fmt.Errorf("helm-values: %w", err)
	}
	_, err = fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (mode 0600): helm install … -f %s\n", o.out, o.out)
	return err
}
