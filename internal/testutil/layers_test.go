package testutil

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestLayers checks that the repository's import graph runs one way: the
// library's packages (and the helpers under internal/ they stand on) never
// import internal/harness, the tools that stand on the library, nor
// internal/testutil outside their tests; internal/crypto imports nothing of
// zpeer's.
func TestLayers(t *testing.T) {
	const mod = "github.com/zpeer/zpeer/"
	deps := func(pkgs ...string) map[string][]string {
		t.Helper()
		args := append([]string{"list", "-deps", "-f", "{{.ImportPath}} {{join .Imports \" \"}}"}, pkgs...)
		gotool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := exec.LookPath(gotool); err != nil {
			gotool = "go"
		}
		out, err := exec.Command(gotool, args...).Output()
		if err != nil {
			t.Skipf("go list: %v (the go tool is needed to read the import graph)", err)
		}
		g := map[string][]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 && strings.HasPrefix(f[0], mod) {
				g[f[0]] = f[1:]
			}
		}
		return g
	}
	library := deps(mod+"codec", mod+"socket", mod+"pattern", mod+"discovery", mod+"metrics", mod+"tracing")
	if len(library) < 6 {
		t.Fatalf("go list found %d zpeer packages, want the library's 6 and their helpers", len(library))
	}
	for pkg, imports := range library {
		for _, imp := range imports {
			if strings.HasPrefix(imp, mod+"internal/harness/") || imp == mod+"internal/testutil" {
				t.Errorf("%s imports %s: the library must not stand on a test or bench harness", pkg, imp)
			}
			if strings.HasPrefix(pkg, mod+"internal/crypto/") && strings.HasPrefix(imp, mod) {
				t.Errorf("%s imports %s: the crypto kernels stand on nothing of zpeer's", pkg, imp)
			}
		}
	}
	if _, ok := library[mod+"internal/crypto/salsa20"]; !ok {
		t.Errorf("socket no longer reaches internal/crypto/salsa20: update this test's picture of the layers")
	}
}
