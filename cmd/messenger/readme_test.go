package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// flagDoc is one flag as the flag package prints it for -h.
type flagDoc struct {
	typ        string // "string", "int", "duration", "" for bool
	usage, def string // def: "" when the default is the zero value
}

// printedFlags runs parse with -h and no environment, and returns the
// flags it printed, by name.
func printedFlags(t *testing.T, parse func(args []string, getenv func(string) string, stderr *bytes.Buffer) error) map[string]flagDoc {
	return printedFlagsEnv(t, parse, func(string) string { return "" })
}

// printedFlagsEnv is printedFlags with the environment getenv.
func printedFlagsEnv(t *testing.T, parse func(args []string, getenv func(string) string, stderr *bytes.Buffer) error, getenv func(string) string) map[string]flagDoc {
	t.Helper()
	var out bytes.Buffer
	if err := parse([]string{"-h"}, getenv, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	flags := map[string]flagDoc{}
	name := ""
	defRE := regexp.MustCompile(`\(default (.*)\)$`)
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "  -"):
			fields := strings.Fields(line)
			name = fields[0][1:]
			flags[name] = flagDoc{}
			if len(fields) > 1 {
				flags[name] = flagDoc{typ: fields[1]}
			}
		case strings.HasPrefix(line, "    \t") && name != "":
			d := flags[name]
			d.usage += strings.TrimPrefix(line, "    \t")
			if m := defRE.FindStringSubmatch(d.usage); m != nil {
				d.def = m[1]
				if u, err := strconv.Unquote(m[1]); err == nil {
					d.def = u
				}
			}
			flags[name] = d
		}
	}
	if len(flags) < 5 {
		t.Fatalf("only %d flags parsed from -h:\n%s", len(flags), out.String())
	}
	return flags
}

// readmeSection returns README.md from the heading to the next heading.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	i := strings.Index(readme, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no heading %q", heading)
	}
	rest := readme[i+len(heading)+2:]
	if j := strings.Index(rest, "\n#"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

// sameDefault reports whether the README's default cell states def: its
// first code span is def, or the same duration.
func sameDefault(cell, def string) bool {
	m := regexp.MustCompile("`([^`]*)`").FindStringSubmatch(cell)
	if m == nil {
		return false
	}
	if m[1] == def {
		return true
	}
	a, err1 := time.ParseDuration(m[1])
	b, err2 := time.ParseDuration(def)
	return err1 == nil && err2 == nil && a == b
}

// TestReadmeConfigurationTable: every server flag has a row in README.md's
// configuration table, with its environment twin (which its usage names)
// and its default; and every row names a flag that exists.
func TestReadmeConfigurationTable(t *testing.T) {
	flags := printedFlags(t, func(args []string, getenv func(string) string, stderr *bytes.Buffer) error {
		_, err := parseOptions(args, getenv, stderr)
		return err
	})
	row := regexp.MustCompile("(?m)^\\| `-([a-z0-9-]+)` \\| `([A-Z0-9_]+)` \\| ([^|]*) \\|")
	rows := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(readmeSection(t, "## Configuration"), -1) {
		rows[m[1]] = m[2:]
	}
	envRE := regexp.MustCompile(`\((MESSENGER_[A-Z0-9_]+)[)=]`)
	for name, f := range flags {
		envs := envRE.FindAllStringSubmatch(f.usage, -1)
		if envs == nil {
			t.Errorf("-%s: its usage names no environment twin (MESSENGER_…)", name)
			continue
		}
		env := envs[len(envs)-1][1]
		r, ok := rows[name]
		switch {
		case !ok:
			t.Errorf("-%s has no row in README.md's configuration table", name)
		case r[0] != env:
			t.Errorf("-%s: README says its environment twin is %s, the code %s", name, r[0], env)
		case f.def != "" && !sameDefault(r[1], f.def):
			t.Errorf("-%s: README's default %q does not start with the code's default `%s`", name, strings.TrimSpace(r[1]), f.def)
		}
	}
	for name := range rows {
		if _, ok := flags[name]; !ok {
			t.Errorf("README.md's configuration table has a row for -%s, which the server does not have", name)
		}
	}
	// Each twin really sets its flag's default.
	for name, f := range flags {
		envs := envRE.FindAllStringSubmatch(f.usage, -1)
		if envs == nil {
			continue
		}
		env := envs[len(envs)-1][1]
		value := map[string]string{"": "true", "int": "7", "duration": "7s"}[f.typ]
		if value == "" {
			value = "x-from-env"
		}
		got := printedFlagsEnv(t, func(args []string, getenv func(string) string, stderr *bytes.Buffer) error {
			_, err := parseOptions(args, getenv, stderr)
			return err
		}, func(k string) string {
			if k == env {
				return value
			}
			return ""
		})[name].def
		if got != value {
			t.Errorf("-%s: %s=%s makes its default %q, want %q", name, env, value, got, value)
		}
	}
}

// TestReadmeRotateFlags: every flag of rotate-storage-key is named in
// README.md's section on it.
func TestReadmeRotateFlags(t *testing.T) {
	flags := printedFlags(t, func(args []string, getenv func(string) string, stderr *bytes.Buffer) error {
		_, err := parseRotateOptions(args, getenv, stderr)
		return err
	})
	section := readmeSection(t, "### Rotating the storage key")
	for name := range flags {
		if !strings.Contains(section, "`-"+name) {
			t.Errorf("-%s of %s is not named in README.md's section on it", name, rotateCommand)
		}
	}
}

// TestProtocolDocLimits: every row of docs/protocol.md §7's resource-limit
// table that names a flag states that flag's default.
func TestProtocolDocLimits(t *testing.T) {
	flags := printedFlags(t, func(args []string, getenv func(string) string, stderr *bytes.Buffer) error {
		_, err := parseOptions(args, getenv, stderr)
		return err
	})
	b, err := os.ReadFile("../../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "\n## 7. Limits")
	end := strings.Index(doc, "\n## 8. ")
	if start < 0 || end < start {
		t.Fatal("docs/protocol.md has no §7")
	}
	row := regexp.MustCompile("(?m)^\\| [^|]+ \\| ([^|]+) \\| `-([a-z0-9-]+)` \\|")
	rows := row.FindAllStringSubmatch(doc[start:end], -1)
	if len(rows) < 10 {
		t.Fatalf("only %d limit rows with a flag found in §7", len(rows))
	}
	for _, m := range rows {
		name := m[2]
		f, ok := flags[name]
		if !ok {
			t.Errorf("§7 names -%s, which the server does not have", name)
			continue
		}
		stated := strings.NewReplacer(",", "", " burst ", ":").Replace(strings.TrimSpace(m[1]))
		if stated != f.def {
			t.Errorf("§7 says -%s defaults to %q, the code to %q", name, strings.TrimSpace(m[1]), f.def)
		}
	}
}
