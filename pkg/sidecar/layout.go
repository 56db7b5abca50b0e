package sidecar

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/floodgate/floodgate/internal/yamlconf"
	"github.com/floodgate/floodgate/pkg/descriptors"
)

// loadRuntimeDir reads a config directory as envoyproxy/ratelimit's runtime
// loader reads its RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY:
// every regular file below it, recursively and whatever its name, each one
// domain; with dotfiles false, files and directories whose names start with
// '.' are skipped (RUNTIME_IGNOREDOTFILES=true). As there, links to files
// are read and links to directories are not followed (a walk never enters
// them), so a mounted ConfigMap's ..data link is not read twice; its
// ..TIMESTAMP directory is a real one, which only dotfiles=false skips.
func loadRuntimeDir(path string, dotfiles bool, opts descriptors.Options) (*descriptors.Config, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, descriptors.Problems{{File: path, Msg: fmt.Sprintf("cannot read config: %v", err), Err: err}}
	}
	if !info.IsDir() {
		return descriptors.Load(path, opts)
	}
	var sources []descriptors.Source
	var problems descriptors.Problems
	root := path
	walkErr := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			problems = append(problems, descriptors.Problem{File: p, Msg: fmt.Sprintf("cannot read config: %v", err), Err: err})
			return nil
		}
		if p == root {
			return nil
		}
		hidden := strings.HasPrefix(d.Name(), ".")
		if d.IsDir() {
			if hidden && !dotfiles {
				return filepath.SkipDir
			}
			return nil
		}
		if hidden && !dotfiles {
			return nil
		}
		fi, err := os.Stat(p) // follows a link
		if err != nil {
			problems = append(problems, descriptors.Problem{File: p, Msg: fmt.Sprintf("cannot read config: %v", err), Err: err})
			return nil
		}
		if fi.IsDir() {
			return nil // a link to a directory, which the reference cannot read either
		}
		data, err := yamlconf.ReadFile(p)
		if err != nil {
			problems = append(problems, descriptors.Problem{File: p, Msg: fmt.Sprintf("cannot read config: %v", err), Err: err})
			return nil
		}
		sources = append(sources, descriptors.Source{Name: p, Data: data})
		return nil
	})
	if walkErr != nil {
		return nil, descriptors.Problems{{File: path, Msg: fmt.Sprintf("cannot read config directory: %v", walkErr), Err: walkErr}}
	}
	cfg, err := descriptors.Build(sources, opts)
	if len(problems) == 0 {
		return cfg, err
	}
	if ps, ok := err.(descriptors.Problems); ok {
		problems = append(problems, ps...)
	}
	return nil, problems
}

// runtimeDirs lists the directories below path that hold a loaded config's
// files, so that a change inside a subdirectory reloads the config too
// (the poller fingerprints a directory's own entries only).
func runtimeDirs(path string) func(*descriptors.Config) []string {
	return func(c *descriptors.Config) []string {
		seen := map[string]bool{}
		var dirs []string
		for _, d := range c.Domains() {
			for _, f := range d.Files {
				if dir := filepath.Dir(f); dir != path && !seen[dir] {
					seen[dir] = true
					dirs = append(dirs, dir)
				}
			}
		}
		sort.Strings(dirs)
		return dirs
	}
}
