package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
)

// templatePaths says where each kind this package injects keeps its pod
// template: the keys from the document's root to the mapping that holds
// the template's metadata and spec (a Pod is its own template). Kinds are
// qualified by API group so that a custom resource that happens to be
// called Deployment is not taken for one.
var templatePaths = map[string][]string{
	"/Pod":                   nil,
	"/PodTemplate":           {"template"},
	"/ReplicationController": {"spec", "template"},
	"apps/Deployment":        {"spec", "template"},
	"apps/StatefulSet":       {"spec", "template"},
	"apps/DaemonSet":         {"spec", "template"},
	"apps/ReplicaSet":        {"spec", "template"},
	"batch/Job":              {"spec", "template"},
	"batch/CronJob":          {"spec", "jobTemplate", "spec", "template"},
}

// supportedKinds lists templatePaths' keys for messages.
func supportedKinds() string {
	var kinds []string
	for k := range templatePaths {
		kinds = append(kinds, strings.TrimPrefix(k, "/"))
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ", ")
}

// Result tells what Manifests did.
type Result struct {
	// Injected names each workload that was changed, as "Kind ns/name".
	Injected []string
	// Warnings are for the user: a workload annotated on its own metadata
	// rather than on its pod template, which is not injected.
	Warnings []string
}

// Manifests injects Floodgate into every workload of a YAML stream whose
// pod template asks for it, and returns the stream with everything else
// left byte for byte as it was: documents that need nothing are copied,
// and the lines that the mutation adds are spliced into the ones it
// touches, under the fields they belong to, with the comments, quoting and
// layout of the rest kept. Only when a change cannot be spliced (a flow
// style mapping such as `annotations: {a: b}`, say) is that one document
// written out again by the YAML encoder. A document of a kind this package
// cannot inject that nonetheless asks for injection is an error, as is a
// workload whose annotations are wrong; the error names the document.
func Manifests(src []byte, opts Options) ([]byte, Result, error) {
	var out bytes.Buffer
	var res Result
	var errs []error
	for i, chunk := range splitDocuments(src) {
		got, err := injectDocument(chunk, opts, &res)
		if err != nil {
			errs = append(errs, fmt.Errorf("document %d (line %d): %w", i+1, chunk.line, err))
			got = chunk.text
		}
		out.Write(got)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, res, err
	}
	return out.Bytes(), res, nil
}

// A chunk is one document of a stream: its text, from its "---" line (if
// any) to the next, and the line where it starts in the stream.
type chunk struct {
	text []byte
	line int
}

// separator matches a line that starts a document ("---", "--- ...") or
// ends one ("..."). Inside a document no line can start so: a block scalar
// at the root would have to be indented.
var separator = regexp.MustCompile(`^(---|\.\.\.)(\s|$)`)

// docStart matches a line that starts a document. A "..." line ends the
// one before and stays in its chunk, where the parser expects it.
var docStart = regexp.MustCompile(`^---(\s|$)`)

func splitDocuments(src []byte) []chunk {
	var chunks []chunk
	start, startLine, line := 0, 1, 1
	for off := 0; off < len(src); line++ {
		end := bytes.IndexByte(src[off:], '\n')
		if end < 0 {
			end = len(src)
		} else {
			end += off + 1
		}
		if docStart.Match(src[off:end]) && off > start {
			chunks = append(chunks, chunk{text: src[start:off], line: startLine})
			start, startLine = off, line
		}
		off = end
	}
	if start < len(src) {
		chunks = append(chunks, chunk{text: src[start:], line: startLine})
	}
	return chunks
}

func injectDocument(c chunk, opts Options, res *Result) ([]byte, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(c.text))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return c.text, nil // comments, a bare "---"
	} else if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return c.text, nil
	}
	root := doc.Content[0]
	apiVersion, kind, namespace, name := identity(root)
	group, _, _ := strings.Cut(apiVersion, "/")
	if !strings.Contains(apiVersion, "/") {
		group = "" // the core group: apiVersion "v1"
	}
	where := describe(kind, namespace, name)
	path, known := templatePaths[group+"/"+kind]
	if !known {
		if asks(root) {
			return nil, fmt.Errorf("%s (apiVersion %s) asks for injection, but this kind cannot be injected: "+
				"supported kinds are %s (a List must be split into its items first)", where, apiVersion, supportedKinds())
		}
		return c.text, nil
	}
	tmplNode := lookup(root, path...)
	if tmplNode == nil || tmplNode.Kind != yaml.MappingNode {
		if !asks(root) {
			return c.text, nil // a partial manifest, say a kustomize patch
		}
		return nil, fmt.Errorf("%s: asks for injection but has no pod template at %s", where, strings.Join(path, "."))
	}
	var tmpl corev1.PodTemplateSpec
	if err := decodeNode(tmplNode, &tmpl); err != nil {
		return nil, fmt.Errorf("%s: pod template: %w", where, err)
	}
	want, err := Wanted(tmpl.Annotations)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if !want {
		if len(path) > 0 && lookup(root, "metadata", "annotations", AnnotationInject) != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %s is on the %s's own metadata, not on its pod template (%s.metadata.annotations): not injected",
				where, AnnotationInject, kind, strings.Join(path, ".")))
		}
		return c.text, nil
	}
	ops, err := Patch(&tmpl, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	if len(ops) == 0 {
		return c.text, nil
	}
	wantTmpl := tmpl.DeepCopy()
	if _, err := Mutate(wantTmpl, opts); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	res.Injected = append(res.Injected, where)
	// Splice, and check the result by reading it back: should the splice
	// ever produce other YAML than the mutation meant (a layout this code
	// does not foresee), the document is re-encoded instead.
	if spliced, ok := splice(c.text, tmplNode, ops); ok && templateEquals(spliced, path, wantTmpl) {
		return spliced, nil
	}
	return reencode(&doc, tmplNode, ops)
}

// identity reads a document's apiVersion, kind, namespace and name.
func identity(root *yaml.Node) (apiVersion, kind, namespace, name string) {
	str := func(keys ...string) string {
		if n := lookup(root, keys...); n != nil && n.Kind == yaml.ScalarNode {
			return n.Value
		}
		return ""
	}
	return str("apiVersion"), str("kind"), str("metadata", "namespace"), str("metadata", "name")
}

// asks reports whether any mapping below n has floodgate.io/inject: "true".
func asks(n *yaml.Node) bool {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k, v := n.Content[i], n.Content[i+1]; k.Value == AnnotationInject && v.Kind == yaml.ScalarNode && v.Value == "true" {
				return true
			}
		}
	}
	return slices.ContainsFunc(n.Content, asks)
}

// lookup follows mapping keys from n; nil when one is missing.
func lookup(n *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if n.Kind != yaml.MappingNode {
			return nil
		}
		next := fields(n)[k]
		if next == nil {
			return nil
		}
		n = next
	}
	return n
}

// decodeNode reads a YAML node into a Kubernetes type through JSON, as
// kubectl does, so that the types' JSON names and custom decoders apply.
func decodeNode(n *yaml.Node, v any) error {
	var generic any
	if err := n.Decode(&generic); err != nil {
		return err
	}
	js, err := json.Marshal(generic)
	if err != nil {
		return err
	}
	return json.Unmarshal(js, v)
}

// templateEquals reports whether the pod template in a document's text is
// want.
func templateEquals(text []byte, path []string, want *corev1.PodTemplateSpec) bool {
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil || len(doc.Content) == 0 {
		return false
	}
	n := lookup(doc.Content[0], path...)
	if n == nil {
		return false
	}
	var got corev1.PodTemplateSpec
	if err := decodeNode(n, &got); err != nil {
		return false
	}
	a, err1 := json.Marshal(got)
	b, err2 := json.Marshal(want)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

// An insertion puts text before line at (0-based) of a document.
type insertion struct {
	at   int
	text string
}

// splice applies ops, relative to the template node, to a document's text
// by inserting lines. It handles what the mutation produces: a new key at
// the end of a block mapping, a new item at the end of a block sequence.
// It reports false for anything else.
func splice(text []byte, tmpl *yaml.Node, ops []Operation) ([]byte, bool) {
	lines := strings.SplitAfter(string(text), "\n")
	eol := "\n"
	if strings.HasSuffix(lines[0], "\r\n") {
		eol = "\r\n"
	}
	var ins []insertion
	for _, op := range ops {
		if op.Op != "add" {
			return nil, false
		}
		tokens := strings.Split(op.Path, "/")[1:]
		parent := tmpl
		for _, t := range tokens[:len(tokens)-1] {
			parent = child(parent, unescape(t))
			if parent == nil {
				return nil, false
			}
		}
		last := unescape(tokens[len(tokens)-1])
		if parent.Style&yaml.FlowStyle != 0 || len(parent.Content) == 0 {
			return nil, false
		}
		var wrapper *yaml.Node
		var indent, lastLine int
		switch parent.Kind {
		case yaml.MappingNode:
			if fields(parent)[last] != nil {
				return nil, false
			}
			indent = parent.Content[0].Column - 1
			lastLine = parent.Content[len(parent.Content)-2].Line
			wrapper = &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: last}, op.Value}}
		case yaml.SequenceNode:
			if last != "-" {
				return nil, false
			}
			indent = parent.Column - 1
			lastLine = parent.Content[len(parent.Content)-1].Line
			wrapper = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{op.Value}}
		default:
			return nil, false
		}
		body, err := encode(wrapper)
		if err != nil {
			return nil, false
		}
		var b strings.Builder
		pad := strings.Repeat(" ", indent)
		for l := range strings.SplitSeq(strings.TrimSuffix(body, "\n"), "\n") {
			b.WriteString(pad + l + eol)
		}
		ins = append(ins, insertion{at: blockEnd(lines, lastLine-1, indent), text: b.String()})
	}
	// Insert from the end so earlier positions stay valid; for one
	// position, in reverse so that the operations keep their order.
	sort.SliceStable(ins, func(i, j int) bool { return ins[i].at < ins[j].at })
	for i := len(ins) - 1; i >= 0; i-- {
		at := ins[i].at
		if at > 0 && !strings.HasSuffix(lines[at-1], "\n") {
			lines[at-1] += eol // the document's last line had no newline
		}
		lines = slices.Insert(lines, at, ins[i].text)
	}
	return []byte(strings.Join(lines, "")), true
}

// child steps one JSON pointer token down from n.
func child(n *yaml.Node, token string) *yaml.Node {
	switch n.Kind {
	case yaml.MappingNode:
		return fields(n)[token]
	case yaml.SequenceNode:
		i, err := strconv.Atoi(token)
		if err != nil || i < 0 || i >= len(n.Content) {
			return nil
		}
		return n.Content[i]
	}
	return nil
}

// blockEnd returns the index of the line after the end of a block
// collection whose entries sit at column indent (0-based) and whose last
// entry starts on line from (0-based). The collection goes on while lines
// are more indented, or (for a sequence under a key at the same column)
// are "- " items; blank lines and comments go with what follows them, so
// trailing comments stay where they are.
func blockEnd(lines []string, from, indent int) int {
	end := from + 1
	for i := from + 1; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], "\r\n")
		t := strings.TrimLeft(l, " ")
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		if separator.MatchString(l) {
			break
		}
		n := len(l) - len(t)
		if n > indent || (n == indent && (t == "-" || strings.HasPrefix(t, "- "))) {
			end = i + 1
			continue
		}
		break
	}
	return end
}

// encode writes a node as block YAML with two-space indentation.
func encode(n *yaml.Node) (string, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(n); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// reencode applies ops to the document's node tree and writes the whole
// document again: the fallback when lines cannot be spliced.
func reencode(doc *yaml.Node, tmpl *yaml.Node, ops []Operation) ([]byte, error) {
	for _, op := range ops {
		if err := applyNode(tmpl, op); err != nil {
			return nil, err
		}
	}
	s, err := encode(doc)
	if err != nil {
		return nil, err
	}
	return []byte("---\n" + s), nil
}

// applyNode applies one operation to a node tree.
func applyNode(root *yaml.Node, op Operation) error {
	tokens := strings.Split(op.Path, "/")[1:]
	parent := root
	for _, t := range tokens[:len(tokens)-1] {
		if parent = child(parent, unescape(t)); parent == nil {
			return fmt.Errorf("%s %s: no such path", op.Op, op.Path)
		}
	}
	last := unescape(tokens[len(tokens)-1])
	parent.Style &^= yaml.FlowStyle
	switch parent.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(parent.Content); i += 2 {
			if parent.Content[i].Value == last {
				if op.Op == "remove" {
					parent.Content = slices.Delete(parent.Content, i, i+2)
				} else {
					parent.Content[i+1] = op.Value
				}
				return nil
			}
		}
		if op.Op != "add" {
			return fmt.Errorf("%s %s: no such field", op.Op, op.Path)
		}
		parent.Content = append(parent.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: last}, op.Value)
		return nil
	case yaml.SequenceNode:
		if last == "-" && op.Op == "add" {
			parent.Content = append(parent.Content, op.Value)
			return nil
		}
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i > len(parent.Content) || (i == len(parent.Content) && op.Op != "add") {
			return fmt.Errorf("%s %s: bad index", op.Op, op.Path)
		}
		switch op.Op {
		case "add":
			parent.Content = slices.Insert(parent.Content, i, op.Value)
		case "replace":
			parent.Content[i] = op.Value
		case "remove":
			parent.Content = slices.Delete(parent.Content, i, i+1)
		}
		return nil
	}
	return fmt.Errorf("%s %s: parent is not a mapping or a sequence", op.Op, op.Path)
}
