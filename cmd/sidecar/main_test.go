package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/floodgate/floodgate/pkg/sidecar"
)

func noEnv(string) string { return "" }

func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, noEnv, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("domain: x\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, requests_per_unit: 1}\n  - key: b\n    rate_limit: {unit: parsec, requests_per_unit: 1}\n"), 0o644)

	code, out, _ := runCmd(t, "validate", "--config", "../../examples/config.yaml")
	if code != 0 || !strings.Contains(out, "edge") {
		t.Errorf("valid example: exit %d, out %q", code, out)
	}
	code, out, _ = runCmd(t, "validate", "--config", bad)
	if code != 1 || !strings.HasPrefix(out, bad+":6: ") || !strings.Contains(out, "unit") {
		t.Errorf("bad unit: exit %d, out %q; want exit 1 and %s:6: ...unit...", code, out, bad)
	}
	code, out, _ = runCmd(t, "validate", "--config", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.Contains(out, "missing.yaml") {
		t.Errorf("missing file: exit %d, out %q", code, out)
	}
}

func TestUnknownCommandAndFlag(t *testing.T) {
	t.Parallel()
	if code, _, errOut := runCmd(t, "frobnicate"); code != exitUsage || !strings.Contains(errOut, "frobnicate") {
		t.Errorf("unknown command: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := runCmd(t, "serve", "--no-such-flag"); code != exitUsage || !strings.Contains(errOut, "no-such-flag") {
		t.Errorf("unknown flag: exit %d, stderr %q", code, errOut)
	}
}

func TestCheckAgainstRunningServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, requests_per_unit: 2, algorithm: fixed_window, name: two}\n"), 0o644)
	s, err := sidecar.ParseSettings([]string{"--config=" + cfg, "--grpc-addr=127.0.0.1:0", "--http-addr=127.0.0.1:0"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	m := sidecar.New(s, slog.New(slog.NewJSONHandler(io.Discard, nil)))
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	addr := m.GRPCAddr()

	code, out, _ := runCmd(t, "check", "--addr", addr, "--domain", "d", "--descriptor", "k=v")
	if code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, "remaining=1") || !strings.Contains(out, "name=two") {
		t.Fatalf("first check: exit %d, out %q", code, out)
	}
	code, out, _ = runCmd(t, "check", "--addr", addr, "--domain", "d", "--descriptor", "k=v", "--json")
	var res checkResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 0 || res.Overall != "OK" || res.Descriptors[0].Remaining != 0 || *res.Descriptors[0].Limit != 2 {
		t.Fatalf("json check: exit %d, err %v, out %q", code, err, out)
	}
	code, out, _ = runCmd(t, "check", "--addr", addr, "--domain", "d", "--descriptor", "k=v")
	if code != exitOverLimit || !strings.Contains(out, "OVER_LIMIT") || !strings.Contains(out, "Retry-After") {
		t.Fatalf("third check: exit %d, out %q; want 3 and OVER_LIMIT", code, out)
	}
	if code, _, errOut := runCmd(t, "check", "--addr", addr, "--domain", "d", "--descriptor", "novalue"); code != exitError || !strings.Contains(errOut, "key=value") {
		t.Fatalf("bad descriptor: exit %d, stderr %q", code, errOut)
	}
	if code, _, _ := runCmd(t, "check", "--addr", "127.0.0.1:1", "--domain", "d", "--descriptor", "k=v", "--timeout", "2s"); code != exitError {
		t.Fatalf("unreachable server: exit %d, want 1", code)
	}
}
