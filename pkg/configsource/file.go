package configsource

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// A Loader reads a config of kind T from a file or directory: for the rate
// limits, descriptors.Load with the settings' options.
type Loader[T any] func(path string) (T, error)

// File watches a file or directory for configs of kind T. It polls a
// fingerprint of the path (names, sizes, modification times and inodes,
// following symlinks) instead of relying on inotify, because a Kubernetes
// ConfigMap update is an atomic swap of the ..data symlink that inotify
// watches on the old target never see; and it reads no file until the
// fingerprint changes.
type File[T any] struct {
	path  string
	every time.Duration
	load  Loader[T]

	print  uint64 // the fingerprint when last loaded
	loaded bool   // Load has run
}

var _ Initial[int] = (*File[int])(nil)

// NewFile returns a watcher of path that checks it every interval and
// reads it with load.
func NewFile[T any](path string, every time.Duration, load Loader[T]) *File[T] {
	return &File[T]{path: path, every: every, load: load}
}

// Origin is the watched path.
func (f *File[T]) Origin() string { return f.path }

// Load reads the path now. The fingerprint is taken first, so that a change
// made while it reads is seen at the next check.
func (f *File[T]) Load() (T, error) {
	// A path that cannot be fingerprinted cannot be loaded either; the
	// load says why.
	f.print, _ = fingerprint(f.path)
	f.loaded = true
	return f.load(f.path)
}

// Watch checks the path every interval until ctx ends, and publishes a
// load each time its fingerprint changed. Without a Load before it, it
// first publishes what the path holds.
func (f *File[T]) Watch(ctx context.Context, publish func(T, error)) error {
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

// check loads the path when its fingerprint changed since the last look.
// A fingerprint that fails (a file vanished mid-look) always reloads and
// is reported even if the load itself succeeds.
func (f *File[T]) check(publish func(T, error)) {
	fp, err := fingerprint(f.path)
	if err == nil && fp == f.print {
		return
	}
	f.print = fp
	cfg, lerr := f.load(f.path)
	if lerr == nil && err != nil {
		lerr = err
	}
	publish(cfg, lerr)
}

// fingerprint hashes what identifies the config files' content at path
// without reading them.
func fingerprint(path string) (uint64, error) {
	h := fnv.New64a()
	add := func(name string, fi fs.FileInfo) {
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%v\x00", name, fi.Size(), fi.ModTime().UnixNano(), inode(fi))
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		add(path, fi)
		return h.Sum64(), nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return 0, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		full := filepath.Join(path, name)
		if strings.HasPrefix(name, "..") {
			// ConfigMap internals: the ..data link's target changes on update.
			if target, err := os.Readlink(full); err == nil {
				fmt.Fprintf(h, "%s->%s\x00", name, target)
			}
			continue
		}
		fi, err := os.Stat(full)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		add(name, fi)
	}
	return h.Sum64(), errors.Join(errs...)
}

// inode is the file's inode number, so that a file replaced by another of the
// same size and time still counts as a change.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
