package configsource_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/configsource"
)

// TestRemovedFileReportedOnce: a removed file is one change, published
// (as an error) once, not at every poll; putting it back reloads it.
func TestRemovedFileReportedOnce(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "n")
	writeFile(t, path, "1")
	w := configsource.NewFile(path, 5*time.Millisecond, loadInt)
	if n, err := w.Load(); err != nil || n != 1 {
		t.Fatalf("Load = %d, %v", n, err)
	}
	var (
		mu     sync.Mutex
		errs   int
		values []int
		polls  = make(chan struct{}, 1)
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Watch(ctx, func(n int, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
			} else {
				values = append(values, n)
			}
			select {
			case polls <- struct{}{}:
			default:
			}
		})
	}()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	<-polls
	// Many more polls of the missing file (5 ms apart); none publishes.
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	if errs != 1 {
		t.Errorf("the removed file was published as %d errors, want 1", errs)
	}
	mu.Unlock()
	writeFile(t, path, "2")
	<-polls
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(values) != 1 || values[0] != 2 || errs != 1 {
		t.Errorf("published %v and %d errors, want [2] after the one error", values, errs)
	}
}
