package configsource

import (
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

// NewFile returns a watcher of a file or directory for configs of kind T,
// checking it every interval and reading it with load. It polls a
// fingerprint of the path (names, sizes, modification times and inodes,
// following symlinks) instead of relying on inotify, because a Kubernetes
// ConfigMap update is an atomic swap of the ..data symlink that inotify
// watches on the old target never see; and it reads no file until the
// fingerprint changes. It is Files without other files to follow.
func NewFile[T any](path string, every time.Duration, load Loader[T]) *Files[T] {
	return NewFiles(path, every, load, nil)
}

// fingerprint hashes what identifies the config files' content at path
// without reading them, and their modes (a chmod that makes a file
// unreadable is a change, reported by the reload that fails).
func fingerprint(path string) (uint64, error) {
	h := fnv.New64a()
	add := func(name string, fi fs.FileInfo) {
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%v\x00%v\x00", name, fi.Size(), fi.ModTime().UnixNano(), inode(fi), fi.Mode())
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
