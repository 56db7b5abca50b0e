// Package yamlconf is the YAML machinery that the config loaders share
// (pkg/descriptors for the limits config, pkg/authconfig for the auth
// config): reading a file or a directory of *.yaml and *.yml files within
// a size bound, decoding a file into yaml.v3 nodes under a node budget
// that bounds alias expansion, and a Parser that walks those nodes and
// records every problem as FILE:LINE: field: message. What the fields
// mean, and which ones a mapping accepts, stays with each loader.
//
// The few messages in which the two configs have always differed are set
// by a Style, so that each loader's messages stay exactly as they were.
package yamlconf
