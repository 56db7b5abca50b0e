package inject

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	corev1 "k8s.io/api/core/v1"
)

// An Operation is one RFC 6902 JSON patch operation. Values are kept as
// YAML nodes decoded from JSON, which keep the order of the fields as the
// Kubernetes types write them (name first), so that the same operation
// reads naturally when spliced into a YAML manifest.
type Operation struct {
	Op    string     // "add", "replace" or "remove"
	Path  string     // a JSON pointer
	Value *yaml.Node // nil for "remove"
}

// MarshalJSON writes the operation as RFC 6902 JSON.
func (o Operation) MarshalJSON() ([]byte, error) {
	out := struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value,omitempty"`
	}{Op: o.Op, Path: o.Path}
	if o.Value != nil {
		v, err := nodeJSON(o.Value)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", o.Op, o.Path, err)
		}
		out.Value = v
	}
	return json.Marshal(out)
}

// Patch runs Mutate on a copy of tmpl and returns the operations that take
// tmpl, as the Kubernetes types write it in JSON, to the mutated template.
// The paths (/metadata/..., /spec/...) are the same in a Pod, so the
// webhook answers with them as they are, and `sidecar inject` applies them
// below a workload's pod template. No operations means nothing to do.
func Patch(tmpl *corev1.PodTemplateSpec, opts Options) ([]Operation, error) {
	mutated := tmpl.DeepCopy()
	changed, err := Mutate(mutated, opts)
	if err != nil || !changed {
		return nil, err
	}
	before, err := toNode(tmpl)
	if err != nil {
		return nil, err
	}
	after, err := toNode(mutated)
	if err != nil {
		return nil, err
	}
	var ops []Operation
	diff(before, after, "", &ops)
	return ops, nil
}

// toNode encodes v as JSON and reads that back as a YAML node tree, which,
// unlike map[string]any, keeps the order of the fields.
func toNode(v any) (*yaml.Node, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %T: %w", v, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(js, &doc); err != nil {
		return nil, fmt.Errorf("reading %T back: %w", v, err)
	}
	n := doc.Content[0]
	blockStyle(n)
	return n, nil
}

// blockStyle drops the flow and quoting styles that JSON input leaves on
// every node, so that an encoder writes block YAML and quotes only the
// strings that need it. It also drops fields whose value is null, which
// the Kubernetes types write for unset pointers without omitempty (a gRPC
// probe's service) and which mean the same as an absent field.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if v := n.Content[i+1]; v.Kind != yaml.ScalarNode || v.Tag != "!!null" {
				kept = append(kept, n.Content[i], v)
			}
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// nodeJSON writes a node tree as JSON.
func nodeJSON(n *yaml.Node) ([]byte, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// diff appends to ops the operations that turn a into b. Arrays that only
// grew get one "add" per new element at the end ("-"), so a patch never
// restates (and never races with) the elements it did not change.
func diff(a, b *yaml.Node, path string, ops *[]Operation) {
	switch {
	case a.Kind == yaml.MappingNode && b.Kind == yaml.MappingNode:
		av, bv := fields(a), fields(b)
		for i := 0; i < len(a.Content); i += 2 {
			k := a.Content[i].Value
			if _, ok := bv[k]; !ok {
				*ops = append(*ops, Operation{Op: "remove", Path: path + "/" + escape(k)})
			}
		}
		for i := 0; i < len(b.Content); i += 2 {
			k := b.Content[i].Value
			p := path + "/" + escape(k)
			if old, ok := av[k]; ok {
				diff(old, b.Content[i+1], p, ops)
			} else {
				*ops = append(*ops, Operation{Op: "add", Path: p, Value: b.Content[i+1]})
			}
		}
	case a.Kind == yaml.SequenceNode && b.Kind == yaml.SequenceNode && len(a.Content) == len(b.Content):
		for i := range a.Content {
			diff(a.Content[i], b.Content[i], path+"/"+strconv.Itoa(i), ops)
		}
	case a.Kind == yaml.SequenceNode && b.Kind == yaml.SequenceNode && len(a.Content) < len(b.Content) && equalAll(a.Content, b.Content[:len(a.Content)]):
		for _, v := range b.Content[len(a.Content):] {
			*ops = append(*ops, Operation{Op: "add", Path: path + "/-", Value: v})
		}
	case !equal(a, b):
		*ops = append(*ops, Operation{Op: "replace", Path: path, Value: b})
	}
}

func fields(m *yaml.Node) map[string]*yaml.Node {
	out := make(map[string]*yaml.Node, len(m.Content)/2)
	for i := 0; i+1 < len(m.Content); i += 2 {
		out[m.Content[i].Value] = m.Content[i+1]
	}
	return out
}

func equalAll(a, b []*yaml.Node) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func equal(a, b *yaml.Node) bool {
	if a.Kind != b.Kind {
		return false
	}
	if a.Kind == yaml.ScalarNode {
		return a.Tag == b.Tag && a.Value == b.Value
	}
	return equalAll(a.Content, b.Content)
}

// escape encodes one JSON pointer token (RFC 6901).
func escape(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~", "~0"), "/", "~1")
}

// unescape decodes one JSON pointer token.
func unescape(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~1", "/"), "~0", "~")
}
