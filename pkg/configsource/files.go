package configsource

import (
	"context"
	"errors"
	"time"
)

// Files watches a file or directory (see NewFile for how), and also every
// file the config last loaded from it says it was read from (an auth
// config's keys files and JWKS files): a change to any of them reloads the
// config. It polls fingerprints and reads nothing until one changes.
type Files[T any] struct {
	path  string
	every time.Duration
	load  Loader[T]
	files func(T) []string

	watched []string         // path, then the last good config's files
	prints  map[string]print // each watched path's fingerprint when last loaded
	loaded  bool             // Load has run
	// failed is the error of the last Load, "" when it succeeded. While
	// it is set, every check loads again, since a file the broken config
	// names (and the last good one did not) is not watched: it may appear
	// at any time. Such a retry is published only when its outcome
	// differs, so a config that stays broken is reported once.
	failed string
}

// print is a path's fingerprint, or why it could not be taken (a file
// removed): a path that keeps failing the same way has not changed, so
// that a removed file is reloaded, logged and counted once, not at every
// poll.
type print struct {
	sum uint64
	err string
}

func printOf(path string) print {
	sum, err := fingerprint(path)
	if err != nil {
		return print{err: err.Error()}
	}
	return print{sum: sum}
}

var _ Initial[int] = (*Files[int])(nil)

// NewFiles returns a watcher of path and of the files that files names
// for the config last loaded, checking them every interval and reading
// path with load. files may name path itself, and duplicates; nil follows
// no other file.
func NewFiles[T any](path string, every time.Duration, load Loader[T], files func(T) []string) *Files[T] {
	return &Files[T]{path: path, every: every, load: load, files: files, watched: []string{path}}
}

// Origin is the watched path (the files it names are not listed).
func (f *Files[T]) Origin() string { return f.path }

// Watched returns the paths watched now: the path, then the files of the
// last config that loaded.
func (f *Files[T]) Watched() []string { return append([]string(nil), f.watched...) }

// Load reads the path now. The fingerprints are taken first, so that a
// change made while it reads is seen at the next check; a file that the
// new config names for the first time is fingerprinted after the load.
func (f *Files[T]) Load() (T, error) {
	before := make(map[string]print, len(f.watched))
	for _, p := range f.watched {
		before[p] = printOf(p)
	}
	cfg, err := f.load(f.path)
	f.loaded = true
	f.failed = ""
	if err == nil {
		f.watched = f.watchList(cfg)
	} else {
		f.failed = err.Error()
	}
	f.prints = make(map[string]print, len(f.watched))
	for _, p := range f.watched {
		fp, ok := before[p]
		if !ok {
			fp = printOf(p)
		}
		f.prints[p] = fp
	}
	return cfg, err
}

func (f *Files[T]) watchList(cfg T) []string {
	list := []string{f.path}
	if f.files == nil {
		return list
	}
	seen := map[string]bool{f.path: true}
	for _, p := range f.files(cfg) {
		if p != "" && !seen[p] {
			seen[p] = true
			list = append(list, p)
		}
	}
	return list
}

// Watch checks the paths every interval until ctx ends, and publishes a
// load each time a fingerprint changed. Without a Load before it, it
// first publishes what the path holds.
func (f *Files[T]) Watch(ctx context.Context, publish func(T, error)) error {
	if !f.loaded {
		publish(f.Load())
	}
	t := time.NewTicker(f.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.check(publish)
		}
	}
}

// check reloads when any watched path's fingerprint changed, or when the
// last load failed (see failed). A fingerprint that starts failing (a file
// vanished) reloads and is reported even if the load itself succeeds; one
// that keeps failing the same way is no change.
func (f *Files[T]) check(publish func(T, error)) {
	changed := false
	var errs []error
	for _, p := range f.watched {
		fp := printOf(p)
		if fp.err != "" {
			errs = append(errs, errors.New(fp.err))
		}
		if fp != f.prints[p] {
			changed = true
		}
	}
	if !changed && f.failed == "" {
		return
	}
	before := f.failed
	cfg, err := f.Load()
	if !changed && err != nil && err.Error() == before {
		return // still broken the same way: reported already
	}
	if err == nil {
		// Report the paths that still fail as the load began, not the
		// ones seen failing before it: a file swapped for a directory (or
		// back) fails to fingerprint for a moment mid-swap.
		errs = errs[:0]
		for _, p := range f.watched {
			if fp := f.prints[p]; fp.err != "" {
				errs = append(errs, errors.New(fp.err))
			}
		}
		err = errors.Join(errs...)
	}
	publish(cfg, err)
}
