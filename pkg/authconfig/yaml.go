package authconfig

import "github.com/floodgate/floodgate/internal/yamlconf"

// YAML nodes are read with yamlconf, as pkg/descriptors reads them:
// documents, syntax errors, aliases under a node budget, mappings with
// duplicate and unknown fields reported, scalars. Problems are
// yamlconf.Problem (descriptors.Problem is the same type), so `sidecar
// validate` and the reload log print both configs' problems alike. Files
// are bounded as for the limits config: an auth, keys or JWKS file may
// hold at most yamlconf.MaxFileSize bytes and expand to
// yamlconf.BaseNodeBudget nodes beyond four per byte.

// style is the wording of the auth config's messages where the loaders
// differ.
var style = yamlconf.Style{
	SecondDocument:    "a file holds one document",
	NegativeAsWritten: true,
}

// parser reads one file's YAML nodes, recording every problem it finds.
type parser struct{ *yamlconf.Parser }

func newParser(file string, data []byte, problems *yamlconf.ProblemList) *parser {
	return &parser{yamlconf.NewParser(file, data, problems, style)}
}

func isYAMLName(name string) bool { return yamlconf.IsYAMLName(name) }
