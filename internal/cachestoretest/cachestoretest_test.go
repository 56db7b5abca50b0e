package cachestoretest_test

import (
	"testing"

	"github.com/floodgate/floodgate/internal/cachestoretest"
	"github.com/floodgate/floodgate/pkg/cachestore"
)

// TestMemory runs the suite against the memory store, the reference it is
// written from (pkg/rediscache runs it against Redis).
func TestMemory(t *testing.T) {
	cachestoretest.Run(t, func(t testing.TB) cachestore.Store {
		s, err := cachestore.NewMemory(cachestore.MemoryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
