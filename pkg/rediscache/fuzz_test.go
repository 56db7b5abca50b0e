package rediscache

import (
	"strings"
	"testing"
)

// FuzzEntryID checks the entry id encoding: parseEntryID returns what
// entryID was given (any primary and variant bytes, a 16-byte host-path
// digest), and on any other string either refuses it or returns parts
// taken from it in order.
func FuzzEntryID(f *testing.F) {
	f.Add("0123456789abcdef", "9f86d081884c7d65", "6:accept=9:text/html")
	f.Add("0123456789abcdef", "", "")
	f.Add("0123456789abcdef", "12:ab", ":5:x!")
	f.Add("0123456789abcdef", "-1", "+2:")
	f.Fuzz(func(t *testing.T, hp, primary, vid string) {
		if len(hp) == 16 {
			id := entryID(hp, primary, vid)
			gh, gp, gv, ok := parseEntryID(id)
			if !ok || gh != hp || gp != primary || gv != vid {
				t.Fatalf("entryID(%q, %q, %q) = %q, parsed as %q, %q, %q, %v", hp, primary, vid, id, gh, gp, gv, ok)
			}
		}
		id := hp + primary + vid
		gh, gp, gv, ok := parseEntryID(id)
		if !ok {
			return
		}
		if !strings.HasPrefix(id, gh) || len(gh) != 16 || !strings.HasSuffix(id, gp+gv) || len(gh)+len(gp)+len(gv) >= len(id) {
			t.Fatalf("parseEntryID(%q) = %q, %q, %q", id, gh, gp, gv)
		}
	})
}
