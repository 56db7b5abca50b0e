package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runCLI runs the sidecar binary with args to completion and returns its
// stdout, stderr and exit code.
func runCLI(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(sidecarBin, args...)
	cmd.Dir = dir
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &ee):
			code = ee.ExitCode()
		default:
			t.Fatalf("sidecar %s: %v", strings.Join(args, " "), err)
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("sidecar %s: still running after 30s", strings.Join(args, " "))
	}
	return out.String(), errb.String(), code
}

// TestValidate runs `sidecar validate` on broken files: it exits 1 and
// names each problem as FILE:LINE: message; on a valid config it exits 0
// with one summary line per domain.
func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := map[string]string{
		"unknown.yaml": "domain: a\ndescriptors:\n  - key: k\n    rate_limt: {unit: second, requests_per_unit: 1}\n",
		"multi.yaml": "domain: a\ndescriptors:\n  - key: k\n    rate_limit: {unit: fortnight, requests_per_unit: 1}\n" +
			"  - key: j\n    value: v\n    rate_limit: {unit: second, requests_per_unit: -1}\n",
		"dup.yaml": "domain: b\ndescriptors:\n  - key: plan\n    value: gold\n    rate_limit: {unit: second, requests_per_unit: 1}\n" +
			"  - key: plan\n    value: gold\n    rate_limit: {unit: minute, requests_per_unit: 1}\n",
		"unlimited.yaml": "domain: c\ndescriptors:\n  - key: k\n    rate_limit:\n      unlimited: true\n      unit: second\n",
		"notyaml.yaml":   "domain: [\n",
		"dir/one.yaml":   "domain: same\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
		"dir/two.yml":    "domain: same\ndescriptors:\n  - key: j\n    rate_limit: {unit: second, requests_per_unit: 1}\n",
	}
	for name, content := range files {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, name, content)
	}
	cases := []struct {
		config string
		want   []string // each must be the start of an output line, with what follows it
	}{
		{"unknown.yaml", []string{`unknown.yaml:4: .*unknown field "rate_limt"`}},
		{"multi.yaml", []string{`multi.yaml:4: .*unit.*"fortnight"`, `multi.yaml:7: .*requests_per_unit.*negative`}},
		{"dup.yaml", []string{`dup.yaml:6: .*duplicate.*plan.*gold.*dup.yaml:3`}},
		{"unlimited.yaml", []string{`unlimited.yaml:[56]: .*unlimited`}},
		{"notyaml.yaml", []string{`notyaml.yaml:[12]: .*YAML`}},
		{"dir", []string{`dir/(one.yaml|two.yml):1: .*duplicate domain "same"`}},
	}
	for _, c := range cases {
		stdout, stderr, code := runCLI(t, dir, "validate", "--config", c.config)
		if code != 1 {
			t.Errorf("validate %s: exit %d, want 1\nstdout: %s\nstderr: %s", c.config, code, stdout, stderr)
		}
		for _, w := range c.want {
			if !regexp.MustCompile(`(?m)^` + w).MatchString(stdout) {
				t.Errorf("validate %s: no line matching %q in:\n%s", c.config, w, stdout)
			}
		}
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			if !regexp.MustCompile(`^[^:]+:\d+: `).MatchString(line) {
				t.Errorf("validate %s: line %q is not FILE:LINE: message", c.config, line)
			}
		}
	}

	// The same two files merge into one domain when asked to.
	stdout, stderr, code := runCLI(t, dir, "validate", "--config", "dir", "--merge-domains")
	if code != 0 || !regexp.MustCompile(`^domain same: .*dir/one.yaml.*dir/two.yml\n$`).MatchString(stdout) {
		t.Errorf("validate dir --merge-domains: exit %d, want 0 and one merged domain\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}

	abs, err := filepath.Abs(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code = runCLI(t, dir, "validate", "--config", abs)
	if code != 0 || !regexp.MustCompile(`(?m)^domain edge: `).MatchString(stdout) || strings.Count(strings.TrimSpace(stdout), "\n") != 0 {
		t.Errorf("validate examples/config.yaml: exit %d, want 0 and one line for domain edge\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
}

// TestCheck runs `sidecar check` against a running sidecar: exit 0 while
// within the limit, 3 over it, 1 on an error.
func TestCheck(t *testing.T) {
	t.Parallel()
	sc := startSidecar(t, "sidecar", "--config", exampleConfig)
	dir := t.TempDir()
	// login allows 5 a minute in one fixed window.
	windowHeadroom(t, time.Minute, 10*time.Second)
	check := func(args ...string) (string, string, int) {
		return runCLI(t, dir, append([]string{"check", "--addr", sc.grpcAddr, "--domain", "edge"}, args...)...)
	}
	for i := range 5 {
		stdout, stderr, code := check("--descriptor", "generic_key=login", "--descriptor", "remote_address=192.0.2.50")
		if code != 0 {
			t.Fatalf("check %d: exit %d, want 0\nstdout: %s\nstderr: %s", i, code, stdout, stderr)
		}
	}
	stdout, stderr, code := check("--descriptor", "generic_key=login", "--json")
	if code != 3 {
		t.Fatalf("check over the limit: exit %d, want 3\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	var res struct {
		Overall     string `json:"overall"`
		Descriptors []struct {
			Code      string `json:"code"`
			Limit     uint32 `json:"limit"`
			Name      string `json:"name"`
			Remaining uint32 `json:"remaining"`
		} `json:"descriptors"`
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("check --json: %v\n%s", err, stdout)
	}
	if res.Overall != "OVER_LIMIT" || len(res.Descriptors) != 1 || res.Descriptors[0].Code != "OVER_LIMIT" ||
		res.Descriptors[0].Limit != 5 || res.Descriptors[0].Name != "login" || res.Headers["Retry-After"] == "" {
		t.Errorf("check --json over the limit: %+v", res)
	}
	// hits: 50 of the address's 100 fit, once.
	if _, _, code := check("--descriptor", "remote_address=192.0.2.51", "--hits", "50"); code != 0 {
		t.Errorf("check --hits 50: exit %d, want 0", code)
	}
	if _, _, code := check("--descriptor", "remote_address=192.0.2.51", "--hits", "51"); code != 3 {
		t.Errorf("check --hits 51 after 50 of 100: exit %d, want 3", code)
	}

	// Errors: a descriptor that does not parse, no descriptor, and a server
	// that is not there (a closed loopback port).
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := free.Addr().String()
	free.Close()
	for _, args := range [][]string{
		{"check", "--addr", sc.grpcAddr, "--domain", "edge", "--descriptor", "novalue"},
		{"check", "--addr", sc.grpcAddr, "--domain", "edge"},
		{"check", "--addr", closed, "--domain", "edge", "--descriptor", "k=v", "--timeout", "5s"},
	} {
		stdout, stderr, code := runCLI(t, dir, args...)
		if code != 1 || stderr == "" {
			t.Errorf("sidecar %s: exit %d, want 1 with a message\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, stdout, stderr)
		}
	}
}
