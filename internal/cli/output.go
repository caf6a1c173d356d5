package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	jmespath "github.com/jmespath-community/go-jmespath"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// outputOptions are the -o and --query flags of every read command, in the
// manner of the az CLI.
type outputOptions struct {
	format string
	query  string
	// aliases are other names of top-level answer fields that --query
	// accepts, such as az's ACR_REGISTRY_CONNECTION_STRING.
	aliases map[string]string
}

func (o *outputOptions) bind(fs *pflag.FlagSet) {
	fs.StringVarP(&o.format, "output", "o", "json", "output format: json, table, tsv, yaml or none")
	fs.StringVar(&o.query, "query", "", "JMESPath query applied to the JSON output (see https://jmespath.org)")
}

// validateOutputFlags checks -o and --query of a command before it does
// anything, so that a typo never leaves a resource created with its
// one-time output (such as token passwords) lost.
func validateOutputFlags(cmd *cobra.Command) error {
	if f := cmd.Flags().Lookup("output"); f != nil {
		switch f.Value.String() {
		case "json", "jsonc", "table", "tsv", "yaml", "none", "text":
		default:
			return fmt.Errorf("--output %q: want json, table, tsv, yaml or none", f.Value.String())
		}
	}
	if f := cmd.Flags().Lookup("query"); f != nil && f.Value.String() != "" {
		if _, err := jmespath.Compile(f.Value.String()); err != nil {
			return fmt.Errorf("--query %q: %w", f.Value.String(), err)
		}
	}
	return nil
}

// table describes how a value is shown as a table: column headers and a
// function extracting the rows from the value's generic JSON form.
type table struct {
	headers []string
	rows    func(v any) [][]string
}

// render writes v in the chosen format, after applying --query.
func (o *outputOptions) render(w io.Writer, v any, t table) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	queried := o.query != ""
	if queried {
		if m, ok := generic.(map[string]any); ok {
			for alias, name := range o.aliases {
				if v, ok := m[name]; ok {
					m[alias] = v
				}
			}
		}
		if generic, err = jmespath.Search(o.query, generic); err != nil {
			return fmt.Errorf("--query %q: %w", o.query, err)
		}
	}
	switch o.format {
	case "none":
		return nil
	}
	if queried && generic == nil {
		return fmt.Errorf("--query %q selects nothing in the answer", o.query)
	}
	switch o.format {
	case "json", "jsonc", "":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(generic)
	case "yaml":
		out, err := yaml.Marshal(generic)
		if err != nil {
			return fmt.Errorf("encode yaml: %w", err)
		}
		_, err = w.Write(out)
		return err
	case "table", "tsv":
		headers, rows := t.headers, [][]string(nil)
		if queried || t.rows == nil {
			headers, rows = genericTable(generic)
		} else {
			rows = t.rows(generic)
		}
		if o.format == "tsv" {
			for _, r := range rows {
				if _, err := fmt.Fprintln(w, strings.Join(r, "\t")); err != nil {
					return err
				}
			}
			return nil
		}
		return writeTable(w, headers, rows)
	default:
		return fmt.Errorf("--output %q: want json, table, tsv, yaml or none", o.format)
	}
}

func writeTable(w io.Writer, headers []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(headers) > 0 {
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
		dashes := make([]string, len(headers))
		for i, h := range headers {
			dashes[i] = strings.Repeat("-", max(len(h), 4))
		}
		fmt.Fprintln(tw, strings.Join(dashes, "\t"))
	}
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// genericTable lays out any JSON value: a list of objects by their keys, a
// single object as one row, scalars as one column.
func genericTable(v any) ([]string, [][]string) {
	list, ok := v.([]any)
	if !ok {
		list = []any{v}
	}
	var keys []string
	for _, item := range list {
		if m, ok := item.(map[string]any); ok {
			for k, val := range m {
				if _, nested := val.(map[string]any); nested {
					continue
				}
				if _, nested := val.([]any); nested {
					continue
				}
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
	}
	slices.Sort(keys)
	if len(keys) == 0 {
		rows := make([][]string, 0, len(list))
		for _, item := range list {
			if inner, ok := item.([]any); ok {
				row := make([]string, len(inner))
				for i, v := range inner {
					row[i] = cell(v)
				}
				rows = append(rows, row)
				continue
			}
			rows = append(rows, []string{cell(item)})
		}
		return []string{"Result"}, rows
	}
	headers := make([]string, len(keys))
	for i, k := range keys {
		headers[i] = titleCase(k)
	}
	rows := make([][]string, 0, len(list))
	for _, item := range list {
		m, _ := item.(map[string]any)
		row := make([]string, len(keys))
		for i, k := range keys {
			row[i] = cell(m[k])
		}
		rows = append(rows, row)
	}
	return headers, rows
}

// titleCase turns "scopeMapName" into "ScopeMapName", as az's table output.
func titleCase(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// cell formats a JSON scalar for a table cell.
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		if x == float64(int64(x)) {
			return fmt.Sprintf("%d", int64(x))
		}
		return fmt.Sprintf("%g", x)
	case bool:
		return fmt.Sprintf("%t", x)
	default:
		b, _ := json.Marshal(x)
		return string(b)
	}
}

// field reads a dotted path from a generic JSON object.
func field(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// listRows maps each element of a JSON list (or a single object) through
// the dotted paths.
func listRows(paths ...string) func(v any) [][]string {
	return func(v any) [][]string {
		list, ok := v.([]any)
		if !ok {
			list = []any{v}
		}
		rows := make([][]string, 0, len(list))
		for _, item := range list {
			row := make([]string, len(paths))
			for i, p := range paths {
				row[i] = cell(field(item, p))
			}
			rows = append(rows, row)
		}
		return rows
	}
}
