package yamlconf

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// MaxFileSize is the largest config file read (and parsed): far beyond any
// real config, it only keeps a huge file named *.yaml by mistake, or a
// hostile one, from exhausting memory.
const MaxFileSize = 8 << 20

// ErrTooLarge is the error of ReadFile for a file larger than MaxFileSize.
var ErrTooLarge = fmt.Errorf("file is larger than %d bytes", MaxFileSize)

// IsYAMLName reports whether a file name ends in .yaml or .yml, in any
// letter case.
func IsYAMLName(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// ReadFile reads at most MaxFileSize bytes of a file. Its error is the file
// system's, or ErrTooLarge.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, ErrTooLarge
	}
	return data, nil
}

// File is one config file of a directory: its contents, or why they could
// not be read.
type File struct {
	// Path is the directory joined with the file's name.
	Path string
	Data []byte
	// Err is why the file could not be read: os.Stat's error when StatErr
	// is set (the entry could not be looked at), ReadFile's otherwise.
	Err     error
	StatErr bool
}

// ReadDir reads the config files of a directory: every *.yaml and *.yml
// file (any letter case), in name order. Names starting with '.' are
// skipped and symbolic links are followed, which reads a mounted
// Kubernetes ConfigMap (whose files are links into ..data/) once;
// subdirectories are not read. The error is os.ReadDir's.
func ReadDir(dir string) ([]File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, e := range entries { // sorted by name
		name := e.Name()
		if strings.HasPrefix(name, ".") || !IsYAMLName(name) {
			continue
		}
		full := filepath.Join(dir, name)
		// Stat follows links: a ConfigMap's entries are links to files.
		fi, err := os.Stat(full)
		if err != nil {
			files = append(files, File{Path: full, Err: err, StatErr: true})
			continue
		}
		if fi.IsDir() {
			continue
		}
		data, err := ReadFile(full)
		files = append(files, File{Path: full, Data: data, Err: err})
	}
	return files, nil
}
