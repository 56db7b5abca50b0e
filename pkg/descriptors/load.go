package descriptors

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Load reads a config file, or every *.yaml and *.yml file (any letter case)
// of a directory, each file defining one domain, and compiles them. In a
// directory, names starting with '.' are skipped and symbolic links are
// followed, which reads a mounted Kubernetes ConfigMap (whose files are
// links into ..data/) once; subdirectories are not read. An empty directory
// gives a Config with no domains. The error, when not nil, is Problems
// listing every problem found.
func Load(path string, opts Options) (*Config, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("cannot read config: %v", err), Err: err}}
	}
	if !info.IsDir() {
		data, err := readFile(path)
		if err != nil {
			return nil, Problems{{File: path, Msg: err.Error(), Err: err}}
		}
		return Build([]Source{{Name: path, Data: data}}, opts)
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("cannot read config directory: %v", err), Err: err}}
	}
	var sources []Source
	var problems Problems
	for _, e := range entries { // sorted by name
		name := e.Name()
		if strings.HasPrefix(name, ".") || !isYAMLName(name) {
			continue
		}
		full := filepath.Join(path, name)
		// Stat follows links: a ConfigMap's entries are links to files.
		fi, err := os.Stat(full)
		if err != nil {
			problems = append(problems, Problem{File: full, Msg: fmt.Sprintf("cannot read config: %v", err), Err: err})
			continue
		}
		if fi.IsDir() {
			continue
		}
		data, err := readFile(full)
		if err != nil {
			problems = append(problems, Problem{File: full, Msg: err.Error(), Err: err})
			continue
		}
		sources = append(sources, Source{Name: full, Data: data})
	}
	cfg, err := Build(sources, opts)
	if len(problems) == 0 {
		return cfg, err
	}
	var ps Problems
	if errors.As(err, &ps) {
		problems = append(problems, ps...)
	}
	// One directory: sorting by path is the order the files were read in.
	slices.SortStableFunc(problems, func(a, b Problem) int {
		return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	return nil, problems
}

func isYAMLName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// readFile reads at most maxFileSize bytes of a file, so that a huge file
// named *.yaml by mistake fails cleanly.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read config: %w", err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("file is larger than %d bytes", maxFileSize)
	}
	return data, nil
}
