package configsource_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/floodgate/floodgate/pkg/configsource"
)

// listConfig is a config read from a main file that names other files
// (as an auth config names its keys files): the sum of every number in
// them, and the files read.
type listConfig struct {
	sum   int
	files []string
}

// loadList reads a main file whose lines are paths (relative to it) of
// files holding one number each.
func loadList(path string) (listConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return listConfig{}, err
	}
	c := listConfig{files: []string{path}}
	for _, line := range strings.Fields(string(b)) {
		p := filepath.Join(filepath.Dir(path), line)
		n, err := loadInt(p)
		if err != nil {
			return listConfig{}, err
		}
		c.sum += n
		c.files = append(c.files, p)
	}
	return c, nil
}

// TestFilesWatchesTheFilesTheConfigNames: an edit to a file the config
// was read from reloads it; a file named by a reload is watched from
// then on, one no longer named is not; a vanished one keeps the config.
func TestFilesWatchesTheFilesTheConfigNames(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	main, a, b := filepath.Join(dir, "main"), filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeFile(t, a, "1")
	writeFile(t, b, "10")
	writeFile(t, main, "a")
	w := configsource.NewFiles(main, 5*time.Millisecond, loadList, func(c listConfig) []string { return c.files })
	src := configsource.New[listConfig](w, configsource.Options[listConfig]{})
	sum := func() int { return src.Snapshot().Config.sum }
	if err := src.Load(); err != nil {
		t.Fatal(err)
	}
	if got := w.Watched(); strings.Join(got, ",") != main+","+a {
		t.Errorf("watched %v", got)
	}
	run(t, src)

	writeFile(t, a, "2")
	eventually(t, "the edit of a named file", func() bool { return sum() == 2 })
	writeFile(t, main, "a\nb")
	eventually(t, "the main file's edit", func() bool { return sum() == 12 })
	writeFile(t, b, "20")
	eventually(t, "the edit of a newly named file", func() bool { return sum() == 22 })

	writeFile(t, main, "b")
	eventually(t, "a dropped from the list", func() bool { return sum() == 20 })
	reloadedAt := src.Snapshot().LoadedAt
	writeFile(t, a, "5")
	time.Sleep(50 * time.Millisecond)
	if snap := src.Snapshot(); snap.Config.sum != 20 || !snap.LoadedAt.Equal(reloadedAt) {
		t.Errorf("an edit of a file no longer named reloaded: %+v", snap)
	}

	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the error of a vanished file", func() bool { return src.Snapshot().Err != nil })
	if sum() != 20 {
		t.Errorf("after a named file vanished: sum %d, want the old config's 20", sum())
	}
	writeFile(t, b, strconv.Itoa(7))
	eventually(t, "the file's return", func() bool { return sum() == 7 && src.Snapshot().Err == nil })
}

// TestFilesRetriesWhileBroken: a reload that fails because the config
// names a file that does not exist yet (its writer creates it next) is
// tried again until it loads, although that file was never watched; the
// error is published once, not at every poll.
func TestFilesRetriesWhileBroken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	main, a, c := filepath.Join(dir, "main"), filepath.Join(dir, "a"), filepath.Join(dir, "c")
	writeFile(t, a, "1")
	writeFile(t, main, "a")
	w := configsource.NewFiles(main, 5*time.Millisecond, loadList, func(c listConfig) []string { return c.files })
	if _, err := w.Load(); err != nil {
		t.Fatal(err)
	}
	var errs, sum atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Watch(ctx, func(cfg listConfig, err error) {
			if err != nil {
				errs.Add(1)
				return
			}
			sum.Store(int64(cfg.sum))
		})
	}()
	defer func() { cancel(); <-done }()
	writeFile(t, main, "c") // c does not exist yet
	eventually(t, "the error of the missing file", func() bool { return errs.Load() > 0 })
	time.Sleep(50 * time.Millisecond) // ten polls, still broken the same way
	writeFile(t, c, "3")
	eventually(t, "the named file's arrival", func() bool { return sum.Load() == 3 })
	if n := errs.Load(); n != 1 {
		t.Errorf("%d errors published for one broken config, want 1", n)
	}
}
