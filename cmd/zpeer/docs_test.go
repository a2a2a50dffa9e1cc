package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Code blocks in the documentation (README.md, docs/, examples/ and bench/
// READMEs) follow one rule: each sits between <!-- begin NAME --> and
// <!-- end NAME --> comments, where NAME is either "fragment" (a piece
// that is not meant to run as it is) or the name under which a test reads
// and runs the block, or checks it (TestReadmeQuickstart, TestReadmeGo,
// codec's TestWireDocExample, ...).

var (
	fence      = regexp.MustCompile("(?m)^```")
	beginEnd   = regexp.MustCompile(`<!-- (begin|end) ([a-z0-9-]+) -->`)
	docRootRel = "../.."
)

// docFiles lists the markdown files whose code blocks the rule covers.
func docFiles(t *testing.T) []string {
	t.Helper()
	root, err := filepath.Abs(docRootRel)
	if err != nil {
		t.Fatal(err)
	}
	files := []string{"README.md", "examples/README.md", "bench/README.md"}
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	for _, d := range docs {
		files = append(files, strings.TrimPrefix(d, root+"/"))
	}
	return files
}

// docBlocks returns the blocks of a markdown file: for each fenced block,
// the NAME of the begin/end pair around it ("" when there is none), with
// the block's text.
type docBlock struct {
	name, info, text string
	line             int
}

func parseDocBlocks(t *testing.T, doc string) []docBlock {
	t.Helper()
	var blocks []docBlock
	open := "" // the begin NAME we are inside, if any
	lines := strings.Split(doc, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := beginEnd.FindStringSubmatch(l); m != nil {
			if m[1] == "begin" {
				open = m[2]
			} else {
				open = ""
			}
			continue
		}
		if !strings.HasPrefix(l, "```") {
			continue
		}
		b := docBlock{name: open, info: strings.TrimSpace(strings.TrimPrefix(l, "```")), line: i + 1}
		var body []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			body = append(body, lines[i])
		}
		b.text = strings.Join(body, "\n") + "\n"
		blocks = append(blocks, b)
	}
	return blocks
}

// namedBlock returns the block called name in the file at the repository
// root.
func namedBlock(t *testing.T, file, name string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(docRootRel, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range parseDocBlocks(t, string(doc)) {
		if b.name == name {
			return b.text
		}
	}
	t.Fatalf("%s has no block between <!-- begin %s --> and <!-- end %s -->", file, name, name)
	return ""
}

// Issue 12 item 14: every code block runs in a test or is marked as a
// fragment.
func TestDocCodeBlocksRunOrAreFragments(t *testing.T) {
	t.Parallel()
	root, _ := filepath.Abs(docRootRel)
	// The names the tests use: any "begin NAME" or "NAME" string literal in
	// a test file of the module.
	var tests bytes.Buffer
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, "_test.go") {
			b, _ := os.ReadFile(path)
			tests.Write(b)
		}
		return nil
	})
	for _, file := range docFiles(t) {
		doc, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(fence.FindAllIndex(doc, -1)); n%2 != 0 {
			t.Errorf("%s: %d fence lines, an odd number", file, n)
		}
		for _, b := range parseDocBlocks(t, string(doc)) {
			switch {
			case b.name == "":
				t.Errorf("%s:%d: a ```%s block neither run by a test nor marked <!-- begin fragment -->", file, b.line, b.info)
			case b.name == "fragment":
			case isDocProgram(b.name):
				if file == "README.md" {
					t.Errorf("%s:%d: %q: doc-go- and doc-sh- blocks are for docs/ (the README's have their own tests)", file, b.line, b.name)
				}
			case !bytes.Contains(tests.Bytes(), []byte(`"`+b.name+`"`)):
				t.Errorf("%s:%d: block %q is run by no test (no test names it)", file, b.line, b.name)
			}
		}
	}
}

// TestReadmeGo runs the README's Go quick start as a newcomer would: a new
// module, the README's steps for an unpublished zpeer (with the clone being
// this repository), go run; and checks that it prints what the README says.
func TestReadmeGo(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(docRootRel)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(root, filepath.Join(dir, "zpeer")); err != nil { // the clone
		t.Fatal(err)
	}
	app := filepath.Join(dir, "app")
	if err := os.Mkdir(app, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(namedBlock(t, "README.md", "readme-go")), 0o644); err != nil {
		t.Fatal(err)
	}
	// The repository's go.sum: checksums of the modules zpeer needs, so that
	// go get need not ask the checksum database (the tests run offline).
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, l := range strings.Split(namedBlock(t, "README.md", "get-unpublished"), "\n") {
		if !strings.HasPrefix(l, "git clone ") { // the symlink stands for it
			if rest, ok := strings.CutPrefix(l, "go "); ok {
				l = goTool() + " " + rest
			}
			steps = append(steps, l)
		}
	}
	script := goTool() + " mod init example.com/app\n" + strings.Join(steps, "\n") + goTool() + " run .\n"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-e", "-c", script)
	cmd.Dir = app
	// Offline: what zpeer needs is in the module cache since this module
	// was built, and no test goes to the network.
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOPROXY=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("the README's Go quick start failed: %v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", err, script, stdout.String(), stderr.String())
	}
	if want := namedBlock(t, "README.md", "readme-go-output"); stdout.String() != want {
		t.Fatalf("it printed\n%s\nthe README says\n%s", stdout.String(), want)
	}

	// The swaps the comments suggest ("X // or: Y") compile too.
	src := namedBlock(t, "README.md", "readme-go")
	swaps := regexp.MustCompile(`(?m)^(\s*)(.+?) // or: (.+)$`).FindAllStringSubmatch(src, -1)
	if len(swaps) == 0 {
		t.Fatal("the README's Go quick start suggests no swap (// or: ...)")
	}
	for _, m := range swaps {
		alt := m[1] + strings.ReplaceAll(m[3], "; ", "\n"+m[1])
		swapped := strings.Replace(src, m[0], alt, 1)
		if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(swapped), 0o644); err != nil {
			t.Fatal(err)
		}
		build := exec.CommandContext(ctx, goTool(), "build", "-o", os.DevNull, ".")
		build.Dir, build.Env = app, cmd.Env
		if out, err := build.CombinedOutput(); err != nil {
			t.Errorf("the README's swap %q does not compile: %v\n%s", m[3], err, out)
		}
	}
}

// Issue 12 item 15: the README starts with how to get zpeer, and lists the
// Debian packages the tests need, the same ones ./test.sh installs.
func TestReadmeStartsWithGettingZpeer(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(docRootRel, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	first := regexp.MustCompile(`(?m)^## (.*)$`).FindStringSubmatch(string(readme))
	if first == nil || first[1] != "Getting zpeer" {
		t.Fatalf("the README's first section is %q, want \"Getting zpeer\"", first)
	}
	for _, want := range []string{"go get github.com/zpeer/zpeer", "go mod edit -replace github.com/zpeer/zpeer=", "go install ./cmd/zpeer"} {
		if !strings.Contains(string(readme), want) {
			t.Errorf("the README does not say %q", want)
		}
	}
	script, err := os.ReadFile(filepath.Join(docRootRel, "test.sh"))
	if err != nil {
		t.Fatal(err)
	}
	debs := regexp.MustCompile(`(?m)^DEBS="([^"]+)"`).FindSubmatch(script)
	if debs == nil {
		t.Fatal("test.sh has no DEBS=\"...\" line")
	}
	apt := regexp.MustCompile(`(?m)^sudo apt-get install (.*)$`).FindStringSubmatch(string(readme))
	if apt == nil {
		t.Fatal("the README has no sudo apt-get install line")
	}
	got, want := strings.Fields(apt[1]), strings.Fields(string(debs[1]))
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("the README installs %v, test.sh %v", got, want)
	}
}

// The README's list of what the socket commands take holds for each: the
// common flags and the security flags on every one, --topic on pub and sub,
// --json on those that print what they receive, and none of the security
// flags on proxy (the README says it has none).
func TestReadmeFlagClaims(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(docRootRel, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(readme)), " ")
	for _, claim := range []string{
		"Every socket command (req rep pub sub push pull dealer router pair) takes",
		"pub and sub take `--topic`; the commands that print what they receive (all but pub and push) take `--json`",
		"`zpeer proxy` does not take them",
	} {
		if !strings.Contains(text, claim) {
			t.Errorf("the README no longer says %q: update this test with it", claim)
		}
	}
	a := &app{}
	var names []string
	for _, c := range a.socketCommands() {
		names = append(names, c.Name())
		want := []string{"bind", "connect", "codec", "count", "timeout", "discover", "iface",
			"key", "server-key", "trust", "allow", "deny"}
		if c.Name() == "pub" || c.Name() == "sub" {
			want = append(want, "topic")
		}
		if c.Name() != "pub" && c.Name() != "push" {
			want = append(want, "json")
		}
		for _, f := range want {
			if c.Flags().Lookup(f) == nil {
				t.Errorf("%s has no --%s", c.Name(), f)
			}
		}
	}
	if got := strings.Join(names, " "); got != "req rep pub sub push pull dealer router pair" {
		t.Errorf("the socket commands are %s; the README lists req rep pub sub push pull dealer router pair", got)
	}
	proxy := a.proxyCommand()
	for _, f := range []string{"key", "server-key", "trust", "allow", "deny"} {
		if proxy.Flags().Lookup(f) != nil {
			t.Errorf("proxy has --%s: the README says it takes no security flags", f)
		}
	}
}

// Blocks named doc-go-NAME in the documentation are whole Go programs and
// blocks named doc-sh-NAME shell scripts that use zpeer; a block named
// doc-go-NAME-output (doc-sh-NAME-output) is what the program must print on
// standard output, exactly. TestDocPrograms runs them as a reader would
// paste them.
func isDocProgram(name string) bool {
	return strings.HasPrefix(name, "doc-go-") || strings.HasPrefix(name, "doc-sh-")
}

type docProgram struct {
	file, name, text string
	output           *string // the -output block, if any
}

// docPrograms collects the doc-go- and doc-sh- blocks of the documentation.
func docPrograms(t *testing.T) []docProgram {
	t.Helper()
	var progs []docProgram
	for _, file := range docFiles(t) {
		doc, err := os.ReadFile(filepath.Join(docRootRel, file))
		if err != nil {
			t.Fatal(err)
		}
		blocks := parseDocBlocks(t, string(doc))
		outputs := map[string]string{}
		for _, b := range blocks {
			if name, ok := strings.CutSuffix(b.name, "-output"); ok && isDocProgram(name) {
				outputs[name] = b.text
			}
		}
		for _, b := range blocks {
			if !isDocProgram(b.name) || strings.HasSuffix(b.name, "-output") {
				continue
			}
			p := docProgram{file: file, name: b.name, text: b.text}
			if out, ok := outputs[b.name]; ok {
				p.output = &out
			}
			progs = append(progs, p)
		}
	}
	return progs
}

// TestDocPrograms builds every doc-go- program of the documentation in one
// module that uses this repository (as the README's "get-unpublished" steps
// set it up), runs each, and runs every doc-sh- script with bash -e in an
// empty directory with the zpeer under test first on PATH.
func TestDocPrograms(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(docRootRel)
	if err != nil {
		t.Fatal(err)
	}
	progs := docPrograms(t)
	var goProgs []docProgram
	for _, p := range progs {
		if strings.HasPrefix(p.name, "doc-go-") {
			goProgs = append(goProgs, p)
		}
	}
	if len(goProgs) == 0 {
		t.Fatal("the documentation has no doc-go- program")
	}
	mod := t.TempDir()
	bin := filepath.Join(mod, "bin")
	goMod := "module example.com/docs\n\ngo 1.26.0\n\nrequire github.com/zpeer/zpeer v0.0.0-00010101000000-000000000000\n\nreplace github.com/zpeer/zpeer => " + root + "\n"
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"go.mod": []byte(goMod), "go.sum": sum}
	for _, p := range goProgs {
		files[filepath.Join(p.name, "main.go")] = []byte(p.text)
	}
	for name, data := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(mod, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mod, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Offline, as TestReadmeGo: what zpeer needs is in the module cache.
	env := append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod", "GOPROXY=off")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, goTool(), "build", "-o", bin+"/", "./...")
	build.Dir, build.Env = mod, env
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the documentation's Go programs: %v\n%s", err, out)
	}

	for _, p := range progs {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var cmd *exec.Cmd
			pctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if strings.HasPrefix(p.name, "doc-go-") {
				cmd = exec.CommandContext(pctx, filepath.Join(bin, p.name))
			} else {
				cmd = exec.CommandContext(pctx, "bash", "-e", "-c", p.text)
				cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(zpeerBin)+":"+os.Getenv("PATH"))
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // background jobs too
				cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			}
			cmd.Dir = dir
			// Files, not pipes: a background job a failed script leaves
			// running must not keep Run waiting for the end of its output.
			stdoutF, err := os.CreateTemp(t.TempDir(), "stdout")
			if err != nil {
				t.Fatal(err)
			}
			stderrF, err := os.CreateTemp(t.TempDir(), "stderr")
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stdout, cmd.Stderr = stdoutF, stderrF
			err = cmd.Run()
			if cmd.SysProcAttr != nil && cmd.Process != nil {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // whatever the script left running
			}
			stdoutF.Close()
			stderrF.Close()
			var stdout, stderr bytes.Buffer
			for f, b := range map[*os.File]*bytes.Buffer{stdoutF: &stdout, stderrF: &stderr} {
				data, rerr := os.ReadFile(f.Name())
				if rerr != nil {
					t.Fatal(rerr)
				}
				b.Write(data)
			}
			if err != nil {
				t.Fatalf("%s's %s failed: %v\nstdout:\n%s\nstderr:\n%s", p.file, p.name, err, stdout.String(), stderr.String())
			}
			if p.output != nil && stdout.String() != *p.output {
				t.Fatalf("%s's %s printed\n%s\nthe document says\n%s\nstderr:\n%s", p.file, p.name, stdout.String(), *p.output, stderr.String())
			}
		})
	}
}
