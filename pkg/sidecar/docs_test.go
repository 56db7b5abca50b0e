package sidecar

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"
)

// TestDocsListEveryFlag: docs/configuration.md has a row for every flag of
// serve, with the flag's own default, so that the table stays true.
func TestDocsListEveryFlag(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // flag → its default column
	for _, line := range strings.Split(string(b), "\n") {
		cols := strings.Split(line, "|")
		if len(cols) < 4 || !strings.HasPrefix(strings.TrimSpace(cols[1]), "`--") {
			continue
		}
		rows[strings.Trim(strings.TrimSpace(cols[1]), "`")] = strings.TrimSpace(cols[2])
	}
	var s Settings
	s.flagSet(io.Discard).VisitAll(func(f *flag.Flag) {
		def, ok := rows["--"+f.Name]
		if !ok {
			t.Errorf("docs/configuration.md has no row for --%s", f.Name)
			return
		}
		want := f.DefValue
		switch want {
		case "":
			return // "none", or said in words
		case "0s":
			want = "0"
		}
		if !strings.HasPrefix(def, "`"+want+"`") {
			t.Errorf("docs/configuration.md: --%s default %s, want `%s`", f.Name, def, want)
		}
	})
}
