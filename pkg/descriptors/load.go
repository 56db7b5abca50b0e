package descriptors

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/floodgate/floodgate/internal/yamlconf"
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
	files, err := yamlconf.ReadDir(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("cannot read config directory: %v", err), Err: err}}
	}
	var sources []Source
	var problems Problems
	for _, f := range files { // sorted by name
		switch {
		case f.StatErr:
			problems = append(problems, Problem{File: f.Path, Msg: fmt.Sprintf("cannot read config: %v", f.Err), Err: f.Err})
		case f.Err != nil:
			err := readError(f.Err)
			problems = append(problems, Problem{File: f.Path, Msg: err.Error(), Err: err})
		default:
			sources = append(sources, Source{Name: f.Path, Data: f.Data})
		}
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

// readFile reads at most yamlconf.MaxFileSize bytes of a file, so that a
// huge file named *.yaml by mistake fails cleanly.
func readFile(path string) ([]byte, error) {
	data, err := yamlconf.ReadFile(path)
	if err != nil {
		return nil, readError(err)
	}
	return data, nil
}

// readError words an error of yamlconf.ReadFile: "cannot read config: "
// and the file system's error, or that the file is too large.
func readError(err error) error {
	if errors.Is(err, yamlconf.ErrTooLarge) {
		return err
	}
	return fmt.Errorf("cannot read config: %w", err)
}
