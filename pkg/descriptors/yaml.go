package descriptors

import "github.com/floodgate/floodgate/internal/yamlconf"

// The YAML machinery (documents, syntax errors, aliases under a node
// budget, mappings and scalars) is yamlconf's, shared with pkg/authconfig;
// parse.go gives the nodes their meaning.

// style is the wording of the limits config's messages where the loaders
// differ.
var style = yamlconf.Style{
	// Each file is one domain, and the reference would silently ignore a
	// second document.
	SecondDocument: "a file holds one domain, put the next one in its own file",
	KeyTag:         true,
}

// parser reads one file's YAML nodes, recording every problem it finds.
type parser struct{ *yamlconf.Parser }

func isYAMLName(name string) bool { return yamlconf.IsYAMLName(name) }
