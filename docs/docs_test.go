package docs_test

// These tests keep the documentation honest. They read the docs and the Go
// source (never a network, never a running server) and fail when:
//
//   - a doc names a FEEDD_ variable that the code does not read;
//   - a variable internal/config reads (or a secret's _FILE variant) is
//     missing from docs/configuration.md;
//   - a default in configuration.md's table is not the real default, or an
//     example there is rejected by the config parser;
//   - a code block runs a feedd command, subcommand or flag cmd/feedd does
//     not know;
//   - docs/api.md names a route no handler registers, or any doc names a
//     METHOD /path pair that is not registered.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/feedd/feedd/internal/config"
)

// pendingCommands are commands the docs describe that are being added to
// cmd/feedd in the same issue (7). Remove an entry once cmd/feedd has it.
var pendingCommands = map[string]bool{}

// pendingFiles are link targets being written by others in the same issue
// (paths relative to the repository root). Remove an entry once it exists.
var pendingFiles = map[string]bool{}

// ---------------------------------------------------------------- docs

type doc struct {
	name  string
	lines []string
}

// readDocs returns docs/*.md and the README.
func readDocs(t *testing.T) []doc {
	t.Helper()
	paths, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no docs/*.md found (run the test from the docs directory)")
	}
	if _, err := os.Stat("../README.md"); err == nil {
		paths = append(paths, "../README.md")
	}
	var out []doc
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, doc{name: p, lines: strings.Split(string(b), "\n")})
	}
	return out
}

func readDoc(t *testing.T, name string) doc {
	t.Helper()
	for _, d := range readDocs(t) {
		if d.name == name {
			return d
		}
	}
	t.Fatalf("%s is missing", name)
	return doc{}
}

type codeLine struct {
	line int    // 1-based line of the block line (first line of a joined command)
	lang string // the block's info string: sh, json, text (program output)...
	text string
}

// codeBlocks returns the lines inside fenced code blocks, with shell
// continuation lines ("\" at the end) joined into one.
func codeBlocks(d doc) []codeLine {
	var out []codeLine
	in, lang := false, ""
	var cur *codeLine
	for i, l := range d.lines {
		if info, ok := strings.CutPrefix(strings.TrimSpace(l), "```"); ok {
			in, lang = !in, strings.TrimSpace(info)
			cur = nil
			continue
		}
		if !in {
			continue
		}
		if cur != nil {
			cur.text += " " + strings.TrimSpace(l)
		} else {
			out = append(out, codeLine{line: i + 1, lang: lang, text: l})
			cur = &out[len(out)-1]
		}
		if strings.HasSuffix(strings.TrimRight(cur.text, " \t"), `\`) {
			cur.text = strings.TrimSuffix(strings.TrimRight(cur.text, " \t"), `\`)
		} else {
			cur = nil
		}
	}
	return out
}

// ---------------------------------------------------------------- Go source

func parseDir(t *testing.T, dir string, tests bool) []*ast.File {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	err := filepath.WalkDir(dir, func(path string, de os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			if n := de.Name(); n == "testdata" || n == "node_modules" || strings.HasPrefix(n, ".") && path != dir {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || (!tests && strings.HasSuffix(path, "_test.go")) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		t.Fatalf("parse %s: %v", dir, err)
	}
	return files
}

func strLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

var varNameRE = regexp.MustCompile(`^FEEDD_[A-Z0-9_]+$`)

// configVars finds the variables internal/config reads: string literals
// "FEEDD_..." passed as the first argument of a call. A variable is a secret
// (it also has a _FILE variant) when it is passed to a method that, directly
// or through other methods, builds name + "_FILE".
func configVars(t *testing.T) (vars, secrets map[string]bool) {
	t.Helper()
	files := parseDir(t, "../internal/config", false)

	// Methods whose body builds X + "_FILE", then every method calling one
	// of those, to a fixpoint.
	bodies := map[string]*ast.BlockStmt{}
	for _, f := range files {
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil && fd.Body != nil {
				bodies[fd.Name.Name] = fd.Body
			}
		}
	}
	fileReaders := map[string]bool{}
	for name, body := range bodies {
		ast.Inspect(body, func(n ast.Node) bool {
			if be, ok := n.(*ast.BinaryExpr); ok && be.Op == token.ADD {
				if s, ok := strLit(be.Y); ok && s == "_FILE" {
					fileReaders[name] = true
				}
			}
			return true
		})
	}
	for changed := true; changed; {
		changed = false
		for name, body := range bodies {
			if fileReaders[name] {
				continue
			}
			ast.Inspect(body, func(n ast.Node) bool {
				if ce, ok := n.(*ast.CallExpr); ok {
					if se, ok := ce.Fun.(*ast.SelectorExpr); ok && fileReaders[se.Sel.Name] {
						fileReaders[name], changed = true, true
					}
				}
				return true
			})
		}
	}
	if len(fileReaders) == 0 {
		t.Fatal(`internal/config: found no method that reads NAME + "_FILE"; update docs_test.go to the new way secrets are read`)
	}

	vars, secrets = map[string]bool{}, map[string]bool{}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			ce, ok := n.(*ast.CallExpr)
			if !ok || len(ce.Args) == 0 {
				return true
			}
			s, ok := strLit(ce.Args[0])
			if !ok || !varNameRE.MatchString(s) {
				return true
			}
			vars[s] = true
			if se, ok := ce.Fun.(*ast.SelectorExpr); ok && fileReaders[se.Sel.Name] {
				secrets[s] = true
			}
			return true
		})
	}
	if len(vars) < 10 {
		t.Fatalf("internal/config: found only %d FEEDD_ variables (%v); the parser in docs_test.go needs updating", len(vars), keys(vars))
	}
	return vars, secrets
}

// otherEnvVars are FEEDD_ variables read anywhere else, with os.Getenv,
// os.LookupEnv or a helper given the name (test switches, for instance):
// documenting them is allowed, not required.
func otherEnvVars(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, dir := range []string{"../internal", "../cmd", "../widget", "../scripts"} {
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		for _, f := range parseDir(t, dir, true) {
			ast.Inspect(f, func(n ast.Node) bool {
				// A constant naming a variable (const EnvURL = "FEEDD_X"),
				// read through its name: os.Getenv(EnvURL).
				if vs, ok := n.(*ast.ValueSpec); ok {
					for _, v := range vs.Values {
						if s, ok := strLit(v); ok && varNameRE.MatchString(s) {
							out[s] = true
						}
					}
					return true
				}
				ce, ok := n.(*ast.CallExpr)
				if !ok || len(ce.Args) == 0 {
					return true
				}
				// os.Getenv("FEEDD_X"), and the tests' own helpers that
				// take the variable's name as an argument (envInt(t, "FEEDD_X", 8)).
				for _, a := range ce.Args {
					if s, ok := strLit(a); ok && varNameRE.MatchString(s) && varNameRE.FindString(s) == s {
						out[s] = true
					}
				}
				return true
			})
		}
	}
	return out
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------- (a) variables

var docVarRE = regexp.MustCompile(`FEEDD_[A-Z0-9_]*[A-Z0-9]`)

func TestDocumentedVariablesExist(t *testing.T) {
	vars, secrets := configVars(t)
	other := otherEnvVars(t)
	known := func(v string) bool {
		if vars[v] || other[v] {
			return true
		}
		base, ok := strings.CutSuffix(v, "_FILE")
		return ok && secrets[base]
	}
	for _, d := range readDocs(t) {
		for i, l := range d.lines {
			for _, v := range docVarRE.FindAllString(l, -1) {
				if !known(v) {
					t.Errorf("%s:%d: %s is not a variable feedd reads (internal/config knows %v; _FILE only for %v)",
						d.name, i+1, v, keys(vars), keys(secrets))
				}
			}
		}
	}
}

// configRow is one row of configuration.md's variable table.
type configRow struct {
	line                  int
	name, def, example    string
	defLiteral, exLiteral bool
}

var rowRE = regexp.MustCompile("^\\|\\s*`(FEEDD_[A-Z0-9_]+)`\\s*\\|(.*)$")

// onlyCode returns the value of a cell that is exactly one `code span`.
func onlyCode(cell string) (string, bool) {
	cell = strings.TrimSpace(cell)
	if len(cell) >= 2 && cell[0] == '`' && cell[len(cell)-1] == '`' && strings.Count(cell, "`") == 2 {
		return cell[1 : len(cell)-1], true
	}
	return "", false
}

func configTable(t *testing.T) map[string]configRow {
	t.Helper()
	d := readDoc(t, "configuration.md")
	rows := map[string]configRow{}
	for i, l := range d.lines {
		m := rowRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		// Only the variable table (name, default, example, meaning); the
		// two-column _FILE table is checked by TestConfigVariablesDocumented.
		cells := strings.Split(m[2], "|")
		if len(cells) < 4 {
			continue
		}
		r := configRow{line: i + 1, name: m[1]}
		r.def, r.defLiteral = onlyCode(cells[0])
		r.example, r.exLiteral = onlyCode(cells[1])
		if _, dup := rows[r.name]; dup {
			t.Errorf("configuration.md:%d: %s has two rows", r.line, r.name)
		}
		rows[r.name] = r
	}
	return rows
}

func TestConfigVariablesDocumented(t *testing.T) {
	vars, secrets := configVars(t)
	rows := configTable(t)
	for _, v := range keys(vars) {
		if _, ok := rows[v]; !ok {
			t.Errorf("configuration.md: %s is read by internal/config but has no table row starting with `%s`", v, v)
		}
	}
	text := strings.Join(readDoc(t, "configuration.md").lines, "\n")
	for _, v := range keys(secrets) {
		if !strings.Contains(text, "`"+v+"_FILE`") {
			t.Errorf("configuration.md: the secret %s can be read from a file, but `%s_FILE` is not documented", v, v)
		}
	}
}

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// loadExample loads the documented example of name, with the examples of
// the variables its error says it needs (FEEDD_SMTP_FROM is refused
// without FEEDD_SMTP_ADDR and FEEDD_ALERT_EMAIL, which switch e-mail on).
func loadExample(name string, examples map[string]string) error {
	set := map[string]string{name: examples[name]}
	for {
		_, _, err := config.Load(env(set))
		if err == nil {
			return nil
		}
		added := false
		for v, ex := range examples {
			if _, ok := set[v]; !ok && strings.Contains(err.Error(), v) {
				set[v], added = ex, true
			}
		}
		if !added {
			return err
		}
	}
}

// TestConfigDefaultsAndExamples checks the table against the parser: setting
// a variable to its documented default must change nothing, and every
// documented example must be accepted.
func TestConfigDefaultsAndExamples(t *testing.T) {
	vars, _ := configVars(t)
	base, _, err := config.Load(env(nil))
	if err != nil {
		t.Fatalf("config.Load with an empty environment: %v", err)
	}
	checked := 0
	examples := map[string]string{}
	for _, r := range configTable(t) {
		if r.exLiteral {
			examples[r.name] = r.example
		}
	}
	for _, r := range configTable(t) {
		if !vars[r.name] {
			continue // reported by TestDocumentedVariablesExist
		}
		if r.defLiteral {
			got, _, err := config.Load(env(map[string]string{r.name: r.def}))
			if err != nil {
				t.Errorf("configuration.md:%d: documented default of %s is rejected: %v", r.line, r.name, err)
			} else if !reflect.DeepEqual(got, base) {
				t.Errorf("configuration.md:%d: %s=%q is not the default (setting it changes the configuration)", r.line, r.name, r.def)
			}
			checked++
		}
		if r.exLiteral {
			if err := loadExample(r.name, examples); err != nil {
				t.Errorf("configuration.md:%d: example of %s is rejected: %v", r.line, r.name, err)
			}
		} else {
			t.Errorf("configuration.md:%d: %s needs an example as one `code span`", r.line, r.name)
		}
	}
	if checked < 10 {
		t.Errorf("only %d defaults were checkable; the table format changed?", checked)
	}
}

// ---------------------------------------------------------------- (b) commands

type commands struct {
	top   map[string]bool
	sub   map[string]map[string]bool // command → its subcommand words
	flags map[string]bool
}

// cliCommands reads cmd/feedd/main.go: the switch whose cases include
// "serve" lists the commands; string literals inside a case's body that
// look like words are that command's subcommands; literal first arguments
// of flag definitions (fs.String("data-dir", ...)) are flags.
func cliCommands(t *testing.T) commands {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "../cmd/feedd/main.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	c := commands{top: map[string]bool{}, sub: map[string]map[string]bool{}, flags: map[string]bool{}}
	word := regexp.MustCompile(`^[a-z][a-z-]*$`)
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.SwitchStmt:
			var clauses []*ast.CaseClause
			isCmd := false
			for _, s := range n.Body.List {
				cc := s.(*ast.CaseClause)
				clauses = append(clauses, cc)
				for _, e := range cc.List {
					if s, _ := strLit(e); s == "serve" {
						isCmd = true
					}
				}
			}
			if !isCmd {
				return true
			}
			for _, cc := range clauses {
				var names []string
				for _, e := range cc.List {
					if s, ok := strLit(e); ok {
						names = append(names, s)
						c.top[s] = true
					}
				}
				subs := map[string]bool{}
				for _, st := range cc.Body {
					ast.Inspect(st, func(m ast.Node) bool {
						if be, ok := m.(*ast.BinaryExpr); ok && (be.Op == token.EQL || be.Op == token.NEQ) {
							for _, side := range []ast.Expr{be.X, be.Y} {
								if s, ok := strLit(side); ok && word.MatchString(s) {
									subs[s] = true
								}
							}
						}
						return true
					})
				}
				for _, name := range names {
					c.sub[name] = subs
				}
			}
		case *ast.CallExpr:
			se, ok := n.Fun.(*ast.SelectorExpr)
			if !ok || len(n.Args) == 0 {
				return true
			}
			switch se.Sel.Name {
			case "String", "Bool", "Int", "Int64", "Uint", "Duration", "Float64", "StringVar", "BoolVar", "IntVar", "DurationVar", "Func":
				arg := n.Args[0]
				if strings.HasSuffix(se.Sel.Name, "Var") && len(n.Args) > 1 {
					arg = n.Args[1]
				}
				if s, ok := strLit(arg); ok && word.MatchString(s) {
					c.flags[s] = true
				}
			}
		}
		return true
	})
	if !c.top["serve"] || !c.top["version"] {
		t.Fatalf("cmd/feedd/main.go: could not find the command switch (found %v)", keys(c.top))
	}
	return c
}

// outputBlock marks code blocks that show output or data, not commands.
var outputBlock = map[string]bool{"text": true, "json": true, "html": true, "css": true}

// feeddCmdRE finds "feedd <word> [args]" run as a program: at the start of
// a line or after a space or a slash (./bin/feedd, /feedd, ./cmd/feedd).
var feeddCmdRE = regexp.MustCompile(`(?:^|[\s/])feedd[ \t]+([a-z][a-z-]*)((?:[ \t]+[^\s;|&]+)*)`)

func TestDocumentedCommandsExist(t *testing.T) {
	c := cliCommands(t)
	found := 0
	for _, d := range readDocs(t) {
		for _, cl := range codeBlocks(d) {
			if outputBlock[cl.lang] {
				continue
			}
			for _, m := range feeddCmdRE.FindAllStringSubmatch(cl.text, -1) {
				cmd, args := m[1], strings.Fields(m[2])
				found++
				where := d.name + ":" + strconv.Itoa(cl.line)
				if !c.top[cmd] {
					if pendingCommands[cmd] {
						continue
					}
					t.Errorf("%s: `feedd %s` is not a command of cmd/feedd (it knows %v)", where, cmd, keys(c.top))
					continue
				}
				if subs := c.sub[cmd]; len(subs) > 0 {
					if len(args) == 0 || !subs[args[0]] {
						t.Errorf("%s: `feedd %s %s` needs one of %v", where, cmd, strings.Join(args, " "), keys(subs))
					}
				}
				for _, a := range args {
					if !strings.HasPrefix(a, "-") || a == "-" || a == "--" {
						continue
					}
					name := strings.TrimLeft(a, "-")
					name, _, _ = strings.Cut(name, "=")
					if !c.flags[name] && !c.top[a] {
						t.Errorf("%s: `feedd %s %s`: flag %s is not defined in cmd/feedd", where, cmd, strings.Join(args, " "), a)
					}
				}
			}
		}
	}
	if found == 0 {
		t.Error("no `feedd <command>` found in any code block; the extraction is broken")
	}
}

// ---------------------------------------------------------------- (c) routes

type routes struct {
	byPath map[string]map[string]bool // pattern → methods
}

var routeMethods = map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true, "Any": true}

// registeredRoutes collects Echo route registrations (x.GET("/path", ...))
// and group prefixes (x.Group("/prefix", ...)) from the non-test source.
// Group routes are recorded under every prefix: a precise enough check that
// a documented path exists.
func registeredRoutes(t *testing.T) routes {
	t.Helper()
	type reg struct{ method, path string }
	var regs []reg
	prefixes := map[string]bool{"": true}
	var files []*ast.File
	for _, dir := range []string{"../internal", "../cmd"} {
		files = append(files, parseDir(t, dir, false)...)
	}
	consts := stringConsts(files)
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			ce, ok := n.(*ast.CallExpr)
			if !ok || len(ce.Args) == 0 {
				return true
			}
			se, ok := ce.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			s, ok := strLit(ce.Args[0])
			if !ok {
				s, ok = constValue(consts, f.Name.Name, ce.Args[0])
			}
			if !ok || (s != "" && !strings.HasPrefix(s, "/")) {
				return true
			}
			switch {
			case se.Sel.Name == "Group":
				prefixes[s] = true
			case routeMethods[se.Sel.Name]:
				regs = append(regs, reg{se.Sel.Name, s})
			}
			return true
		})
	}
	r := routes{byPath: map[string]map[string]bool{}}
	for _, g := range regs {
		for p := range prefixes {
			full := p + g.path
			if full == "" {
				full = "/"
			}
			if r.byPath[full] == nil {
				r.byPath[full] = map[string]bool{}
			}
			r.byPath[full][g.method] = true
		}
	}
	if len(r.byPath) < 10 {
		t.Fatalf("found only %d routes; the extraction in docs_test.go needs updating", len(r.byPath))
	}
	return r
}

// stringConsts maps "pkg.Name" to the value of every string constant
// declared with a literal, or with another such constant, in files.
func stringConsts(files []*ast.File) map[string]string {
	out := map[string]string{}
	for range 3 { // constants naming constants, a few levels deep
		for _, f := range files {
			for _, d := range f.Decls {
				gd, ok := d.(*ast.GenDecl)
				if !ok || gd.Tok != token.CONST {
					continue
				}
				for _, sp := range gd.Specs {
					vs := sp.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i >= len(vs.Values) {
							continue
						}
						v, ok := strLit(vs.Values[i])
						if !ok {
							v, ok = constValue(out, f.Name.Name, vs.Values[i])
						}
						if ok {
							out[f.Name.Name+"."+name.Name] = v
						}
					}
				}
			}
		}
	}
	return out
}

// constValue resolves name (in package pkg) or otherpkg.Name through consts.
func constValue(consts map[string]string, pkg string, e ast.Expr) (string, bool) {
	switch x := e.(type) {
	case *ast.Ident:
		v, ok := consts[pkg+"."+x.Name]
		return v, ok
	case *ast.SelectorExpr:
		if id, ok := x.X.(*ast.Ident); ok {
			v, ok := consts[id.Name+"."+x.Sel.Name]
			return v, ok
		}
	}
	return "", false
}

// match reports whether a documented path matches a route pattern: ":x"
// matches any one segment, "*" the rest.
func match(pattern, path string) bool {
	ps, ds := strings.Split(pattern, "/"), strings.Split(path, "/")
	for i, p := range ps {
		if p == "*" {
			return true
		}
		if i >= len(ds) {
			return false
		}
		if strings.HasPrefix(p, ":") {
			if ds[i] == "" {
				return false
			}
			continue
		}
		if p != ds[i] {
			return false
		}
	}
	return len(ps) == len(ds)
}

// methods returns the methods registered for a path (nil: no route).
func (r routes) methods(path string) map[string]bool {
	var out map[string]bool
	for p, ms := range r.byPath {
		if match(p, path) {
			if out == nil {
				out = map[string]bool{}
			}
			for m := range ms {
				out[m] = true
			}
		}
	}
	return out
}

var (
	// urlRE finds absolute URLs and $FEEDD-based ones (the docs' shell
	// variable for feedd's URL).
	urlRE  = regexp.MustCompile(`(?:https?://[A-Za-z0-9.\-:\[\]]+|\$\{?FEEDD\}?)([^\s"'\x60)]*)`)
	pathRE = regexp.MustCompile("(?:^|[\\s`\"'(\\[=])(/[A-Za-z0-9_.{}:*\\-/]+)")
	// methodRE and curlXRE run on lines passed through feeddPaths.
	methodRE   = regexp.MustCompile("\\b(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)[ \t]+`?(/[A-Za-z0-9_.{}:*\\-/]*)")
	curlXRE    = regexp.MustCompile(`-X[ \t]+(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)\b.*?[ \t](/[A-Za-z0-9_.{}:*\-/]*)`)
	trailPunct = ".,:;"
)

// feeddHosts are the hosts the docs use for feedd itself; URLs on other
// hosts (instagram.com, the owner's site) are not feedd routes.
var feeddHosts = []string{"https://feeds.example.com", "http://localhost:8080", "http://127.0.0.1:8080", "$FEEDD", "${FEEDD}"}

// feeddPaths replaces each URL on feedd's hosts by its path and drops
// every other URL.
func feeddPaths(line string) string {
	return urlRE.ReplaceAllStringFunc(line, func(u string) string {
		for _, h := range feeddHosts {
			if p, ok := strings.CutPrefix(u, h); ok && (p == "" || p[0] == '/' || p[0] == '?') {
				return " " + p
			}
		}
		return " "
	})
}

// notHTTP tells file paths in shell examples from routes.
func notHTTP(p string) bool {
	for _, pre := range []string{"/dev/", "/etc/", "/var/", "/usr/", "/tmp/", "/run/", "/data"} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

func cleanPath(p string) string {
	p = strings.TrimRight(p, trailPunct)
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	return p
}

func TestAPIRoutesExist(t *testing.T) {
	r := registeredRoutes(t)
	d := readDoc(t, "api.md")
	n := 0
	for i, l := range d.lines {
		for _, m := range pathRE.FindAllStringSubmatch(feeddPaths(l), -1) {
			p := cleanPath(m[1])
			if len(p) < 2 || notHTTP(p) {
				continue
			}
			n++
			if r.methods(p) == nil {
				t.Errorf("api.md:%d: %s is not a registered route", i+1, p)
			}
		}
	}
	if n < 10 {
		t.Errorf("found only %d paths in api.md; the extraction is broken", n)
	}
}

func TestDocumentedMethodsExist(t *testing.T) {
	r := registeredRoutes(t)
	for _, d := range readDocs(t) {
		check := func(line int, method, path string) {
			path = cleanPath(path)
			if len(path) < 2 {
				return
			}
			ms := r.methods(path)
			if ms == nil {
				t.Errorf("%s:%d: %s %s: no such route", d.name, line, method, path)
				return
			}
			if !ms[method] && !ms["Any"] {
				t.Errorf("%s:%d: %s %s: the route exists but not for %s (it has %v)", d.name, line, method, path, method, keys(ms))
			}
		}
		for i, l := range d.lines {
			for _, m := range methodRE.FindAllStringSubmatch(feeddPaths(l), -1) {
				check(i+1, m[1], m[2])
			}
		}
		for _, cl := range codeBlocks(d) {
			for _, m := range curlXRE.FindAllStringSubmatch(feeddPaths(cl.text), -1) {
				check(cl.line, m[1], m[2])
			}
		}
	}
}

// TestMatch pins the route matcher the other tests rely on.
func TestMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, path string
		want          bool
	}{
		{"/feeds/:id", "/feeds/{id}.html", true},
		{"/feeds/:id/embed", "/feeds/{id}/embed", true},
		{"/feeds/:id", "/feeds/{id}/embed", false},
		{"/media/*", "/media/ab/cd-320.jpg", true},
		{"/api/admin/feeds", "/api/admin/feed", false},
		{"/healthz", "/healthz", true},
		{"/api/v1/feeds/:id", "/api/v1/feeds/", false},
	} {
		if got := match(c.pattern, c.path); got != c.want {
			t.Errorf("match(%q, %q) = %v, want %v", c.pattern, c.path, got, c.want)
		}
	}
	// The command extraction finds commands after paths and not in names.
	for line, want := range map[string][]string{
		"go run ./cmd/feedd demo":                    {"demo"},
		"docker exec feedd /feedd admin reset-token": {"admin"},
		"ExecStart=/usr/local/bin/feedd serve":       {"serve"},
		"systemctl restart feedd":                    nil,
		"chown feedd:feedd /var/lib/feedd":           nil,
	} {
		var got []string
		for _, m := range feeddCmdRE.FindAllStringSubmatch(line, -1) {
			got = append(got, m[1])
		}
		if !slices.Equal(got, want) {
			t.Errorf("commands in %q = %v, want %v", line, got, want)
		}
	}
}

// ---------------------------------------------------------------- links

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	headingRE = regexp.MustCompile(`^#{1,6}\s+(.*)$`)
)

// slug is the anchor a heading gets on the usual Markdown renderers:
// lower case, punctuation dropped, spaces to hyphens.
func slug(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		}
	}
	return b.String()
}

func anchors(d doc) map[string]bool {
	out := map[string]bool{}
	in := false
	for _, l := range d.lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in = !in
			continue
		}
		if m := headingRE.FindStringSubmatch(l); m != nil && !in {
			out[slug(m[1])] = true
		}
	}
	return out
}

// TestRelativeLinks checks that links between the docs (and from the
// README) name files that exist and headings those files have.
func TestRelativeLinks(t *testing.T) {
	docs := readDocs(t)
	byPath := map[string]doc{}
	for _, d := range docs {
		p, _ := filepath.Abs(d.name)
		byPath[p] = d
	}
	for _, d := range docs {
		for i, l := range d.lines {
			for _, m := range linkRE.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, frag, _ := strings.Cut(target, "#")
				path := d.name
				if file != "" {
					path = filepath.Join(filepath.Dir(d.name), file)
				}
				if _, err := os.Stat(path); err != nil {
					if rel, rerr := filepath.Rel("..", path); rerr == nil && pendingFiles[filepath.ToSlash(rel)] {
						continue
					}
					t.Errorf("%s:%d: link %s: %s does not exist", d.name, i+1, target, path)
					continue
				}
				if frag == "" {
					continue
				}
				abs, _ := filepath.Abs(path)
				td, ok := byPath[abs]
				if !ok {
					continue
				}
				if !anchors(td)[frag] {
					t.Errorf("%s:%d: link %s: %s has no heading #%s", d.name, i+1, target, td.name, frag)
				}
			}
		}
	}
}
