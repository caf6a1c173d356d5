package cli

import (
	"errors"
	"strings"
	"unicode"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// List flags take several values after one flag, as az does
// (`--image apps/web:1 apps/api:1`), besides repeating the flag. pflag has
// no such flags, so expandListArgs rewrites the command line before cobra
// parses it: the words that follow a list flag, up to the next flag, become
// its values. Every list flag is declared with listFlag, which marks it
// with listAnnotation; nothing else decides which flags take lists.

// listAnnotation marks a list flag; its value is the flag's listKind.
const listAnnotation = "outpost/list"

type listKind string

const (
	// listNames: each word is one value; commas also separate values
	// (names, repositories and references never hold a comma or a space).
	listNames listKind = "names"
	// listPaths: each word is one value, taken as it is (file paths).
	listPaths listKind = "paths"
	// listGroup: the words after one flag form one group, such as a
	// repository and its actions; repeat the flag for another group.
	listGroup listKind = "group"
)

// listValue is the pflag.Value of a list flag.
type listValue struct {
	items *[]string
	kind  listKind
}

var errEmptyListValue = errors.New("a value is required")

func (v *listValue) Set(s string) error {
	if v.kind != listNames {
		if strings.TrimSpace(s) == "" {
			return errEmptyListValue
		}
		*v.items = append(*v.items, s)
		return nil
	}
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	if len(parts) == 0 {
		return errEmptyListValue
	}
	*v.items = append(*v.items, parts...)
	return nil
}

func (v *listValue) Type() string {
	if v.kind == listGroup {
		return "group"
	}
	return "list"
}

func (v *listValue) String() string {
	if v.items == nil || len(*v.items) == 0 {
		return ""
	}
	return "[" + strings.Join(*v.items, ",") + "]"
}

// listFlag declares a list flag of kind. aliases are other spellings of
// the flag (az's singular forms such as --add-client-token); they are
// named in the help text.
func listFlag(fs *pflag.FlagSet, p *[]string, kind listKind, name, usage string, aliases ...string) {
	switch kind {
	case listNames:
		usage += "; several after one flag, comma-separated, or the flag repeated"
	case listPaths:
		usage += "; several after one flag, or the flag repeated"
	case listGroup:
		usage += "; repeat the flag for another group"
	}
	if len(aliases) > 0 {
		usage += " (also --" + strings.Join(aliases, ", --") + ")"
	}
	fs.Var(&listValue{items: p, kind: kind}, name, usage)
	_ = fs.SetAnnotation(name, listAnnotation, []string{string(kind)})
	if len(aliases) > 0 {
		flagAliases(fs, name, aliases...)
	}
}

// flagAliases makes pflag accept aliases as spellings of the flag name.
func flagAliases(fs *pflag.FlagSet, name string, aliases ...string) {
	prev := fs.GetNormalizeFunc()
	fs.SetNormalizeFunc(func(f *pflag.FlagSet, n string) pflag.NormalizedName {
		for _, a := range aliases {
			if n == a {
				n = name
			}
		}
		return prev(f, n)
	})
}

// expandListArgs rewrites args for the command they run so that pflag sees
// one value per argument: "--image a b" becomes "--image=a --image=b", and
// a group flag's words become one value ("--repository=r content/read").
// A word starting with "-" ends the list; "--" ends all flags.
func expandListArgs(root *cobra.Command, args []string) []string {
	cmd, _, err := root.Find(args)
	if err != nil {
		return args
	}
	fs := cmd.Flags()
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		f, vals := lookupListFlag(fs, a)
		if f == nil {
			out = append(out, a)
			continue
		}
		for i+1 < len(args) && !isFlagArg(args[i+1]) {
			i++
			vals = append(vals, args[i])
		}
		flag := "--" + f.Name + "="
		switch {
		case len(vals) == 0:
			// No value: pflag must not take the next flag as the value.
			out = append(out, flag)
		case f.Annotations[listAnnotation][0] == string(listGroup):
			out = append(out, flag+strings.Join(vals, " "))
		default:
			for _, v := range vals {
				out = append(out, flag+v)
			}
		}
	}
	return out
}

// lookupListFlag returns the list flag that arg names (--name, --name=v,
// -n or -n=v), with the inline value when there is one.
func lookupListFlag(fs *pflag.FlagSet, arg string) (*pflag.Flag, []string) {
	if !isFlagArg(arg) {
		return nil, nil
	}
	name, value, inline := strings.Cut(strings.TrimLeft(arg, "-"), "=")
	var f *pflag.Flag
	switch {
	case strings.HasPrefix(arg, "--"):
		f = fs.Lookup(name)
	case len(name) == 1:
		f = fs.ShorthandLookup(name)
	}
	if f == nil || f.Annotations[listAnnotation] == nil {
		return nil, nil
	}
	if inline {
		return f, []string{value}
	}
	return f, nil
}

// isFlagArg reports whether a word is a flag rather than a value.
func isFlagArg(s string) bool { return len(s) > 1 && s[0] == '-' }
