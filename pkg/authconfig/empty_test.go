package authconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestZeroByteFilesRefused: a zero-byte auth file (alone or in a
// directory) or keys file is refused, naming the file, since it is most
// likely one caught mid-write; a file that says "no keys" loads.
func TestZeroByteFilesRefused(t *testing.T) {
	t.Parallel()
	write := func(t *testing.T, dir, name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name  string
		files map[string]string
		load  string // the path given to Load, relative to the directory ("" = the directory)
		want  string // the file named and the message, or "" to load
	}{
		{"auth file", map[string]string{"auth.yaml": ""}, "auth.yaml", "auth.yaml: the file is empty"},
		{"auth file in a directory", map[string]string{"10-a.yaml": "policies: []\n", "20-b.yaml": ""}, "", "20-b.yaml: the file is empty"},
		{"keys file", map[string]string{"auth.yaml": "api_keys: {files: [keys.yaml]}\n", "keys.yaml": ""}, "auth.yaml", "keys.yaml: the file is empty"},
		{"no keys, said", map[string]string{"auth.yaml": "api_keys: {files: [keys.yaml]}\n", "keys.yaml": "keys: []\n"}, "auth.yaml", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for name, body := range tt.files {
				write(t, dir, name, body)
			}
			_, err := Load(filepath.Join(dir, tt.load))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Load: %v, want it to load", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Load: %v, want %q", err, tt.want)
			}
		})
	}
}
