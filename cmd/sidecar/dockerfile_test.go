package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// dockerLines are the Dockerfile's instructions, continuation lines joined
// and comments dropped, each split into its fields.
func dockerLines(t *testing.T) [][]string {
	t.Helper()
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	var cur string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") || line == "" && cur == "" {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		cur += line
		if f := strings.Fields(cur); len(f) > 0 {
			out = append(out, f)
		}
		cur = ""
	}
	return out
}

// TestDockerfileShipsRatelimit: the image has /bin/ratelimit, a link to
// the sidecar binary made in the build stage (the runtime base has no
// shell) and copied as a directory, which keeps it a link; the entrypoint
// stays /sidecar.
func TestDockerfileShipsRatelimit(t *testing.T) {
	t.Parallel()
	lines := dockerLines(t)
	var stages int
	var link, copied, binary bool
	var entry []string
	for _, f := range lines {
		switch strings.ToUpper(f[0]) {
		case "FROM":
			stages++
		case "RUN":
			cmd := strings.Join(f[1:], " ")
			if stages == 1 && strings.Contains(cmd, "ln -s /sidecar /out/bin/ratelimit") {
				link = true
			}
		case "COPY":
			if stages == 2 && slices.Equal(f[1:], []string{"--from=build", "/out/bin/", "/bin/"}) {
				copied = true
			}
			if stages == 2 && slices.Equal(f[1:], []string{"--from=build", "/out/sidecar", "/sidecar"}) {
				binary = true
			}
		case "ENTRYPOINT":
			entry = f[1:]
		}
	}
	if stages != 2 || !link || !copied || !binary {
		t.Errorf("stages %d, link made in the build stage %v, /out/bin/ copied to /bin/ %v, /sidecar copied %v", stages, link, copied, binary)
	}
	if strings.Join(entry, " ") != `["/sidecar"]` {
		t.Errorf("ENTRYPOINT %q, want [\"/sidecar\"]", entry)
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		argv, want []string
	}{
		{[]string{"/bin/ratelimit"}, []string{"ratelimit"}},
		{[]string{"ratelimit", "--log-level=debug"}, []string{"ratelimit", "--log-level=debug"}},
		{[]string{"/sidecar", "serve"}, []string{"serve"}},
		{[]string{"/sidecar"}, []string{}},
		{[]string{"/usr/local/bin/ratelimiter"}, []string{}},
	}
	for _, tt := range tests {
		if got := commandLine(tt.argv); !slices.Equal(got, tt.want) {
			t.Errorf("commandLine(%q) = %q, want %q", tt.argv, got, tt.want)
		}
	}
}
