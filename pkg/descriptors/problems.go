package descriptors

import "github.com/floodgate/floodgate/internal/yamlconf"

// Problem is one config error. Its Error text is "FILE:LINE: FIELD: MSG",
// which editors and CI logs turn into links. File is the file's path as it
// was given to Load (or the name given to Parse); Line is the 1-based line
// of the offending YAML node, 0 when the problem concerns the whole file;
// Field is the path of the offending field inside the file, such as
// "descriptors[0].rate_limit.unit"; Err is the underlying cause, when there
// is one. The auth config (pkg/authconfig) reports its problems in the same
// type.
type Problem = yamlconf.Problem

// Problems is every problem found in a config; it is the error Load and
// Parse return. Its Error text has one "FILE:LINE: message" per line, and
// its Unwrap lets errors.Is and errors.As look at each problem.
type Problems = yamlconf.Problems
