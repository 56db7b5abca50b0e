package xdsconfig

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	rlconf "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"

	"github.com/floodgate/floodgate/pkg/descriptors"
)

// TypeURL is the resource type the client asks for: envoyproxy/ratelimit's
// RateLimitConfig, one resource per domain.
const TypeURL = "type.googleapis.com/ratelimit.config.ratelimit.v3.RateLimitConfig"

// Compile turns one xDS response's resources into a compiled config. Each
// RateLimitConfig is written out as the YAML file that says the same thing
// and the files go through descriptors.Build, so a resource is validated
// exactly as a file is and its problems read alike: "xds:NAME: FIELD: MSG",
// NAME being the resource's name. The problems carry no line (the YAML is
// only an intermediate form), and a message that points at another
// descriptor names its field instead of a line.
func Compile(resources []*anypb.Any, opts descriptors.Options) (*descriptors.Config, error) {
	sources := make([]descriptors.Source, 0, len(resources))
	lines := map[string]map[int]string{} // source → descriptor line → field
	var problems descriptors.Problems
	for i, res := range resources {
		name := fmt.Sprintf("xds:resources[%d]", i)
		if res.GetTypeUrl() != TypeURL {
			problems = append(problems, descriptors.Problem{File: name,
				Msg: fmt.Sprintf("resource of type %q; only %s is served here", res.GetTypeUrl(), TypeURL)})
			continue
		}
		var rc rlconf.RateLimitConfig
		if err := anypb.UnmarshalTo(res, &rc, proto.UnmarshalOptions{}); err != nil {
			problems = append(problems, descriptors.Problem{File: name, Msg: fmt.Sprintf("cannot decode the RateLimitConfig: %v", err), Err: err})
			continue
		}
		if rc.GetName() != "" {
			name = "xds:" + rc.GetName()
		}
		data, err := yaml.Marshal(configNode(&rc))
		if err != nil { // a tree of plain scalars always marshals
			problems = append(problems, descriptors.Problem{File: name, Msg: fmt.Sprintf("cannot convert the RateLimitConfig: %v", err), Err: err})
			continue
		}
		sources = append(sources, descriptors.Source{Name: name, Data: data})
		lines[name] = descriptorLines(data)
	}
	if len(problems) > 0 {
		return nil, problems
	}
	cfg, err := descriptors.Build(sources, opts)
	if ps, ok := err.(descriptors.Problems); ok {
		return nil, withoutLines(ps, lines)
	}
	return cfg, err
}

// configNode is the YAML file for rc. Fields at their proto zero value are
// left out, except those a file must have (domain, key): an empty one then
// fails as an empty one in a file does. A rate_limit without a unit (the
// enum's UNKNOWN) has none, so it is reported missing; requests_per_unit is
// written unless the limit is unlimited (0 blocks every request, as in a
// file).
func configNode(rc *rlconf.RateLimitConfig) *yaml.Node {
	root := mapping()
	add(root, "domain", str(rc.GetDomain()))
	if ds := rc.GetDescriptors(); len(ds) > 0 {
		add(root, "descriptors", descriptorList(ds))
	}
	return root
}

func descriptorList(ds []*rlconf.RateLimitDescriptor) *yaml.Node {
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for _, d := range ds {
		m := mapping()
		add(m, "key", str(d.GetKey()))
		if d.GetValue() != "" {
			add(m, "value", str(d.GetValue()))
		}
		if rl := d.GetRateLimit(); rl != nil {
			add(m, "rate_limit", rateLimitNode(rl))
		}
		if d.GetShadowMode() {
			add(m, "shadow_mode", boolean(true))
		}
		if d.GetDetailedMetric() {
			add(m, "detailed_metric", boolean(true))
		}
		if children := d.GetDescriptors(); len(children) > 0 {
			add(m, "descriptors", descriptorList(children))
		}
		list.Content = append(list.Content, m)
	}
	return list
}

func rateLimitNode(rl *rlconf.RateLimitPolicy) *yaml.Node {
	m := mapping()
	if u := rl.GetUnit(); u != rlconf.RateLimitUnit_UNKNOWN {
		name, known := rlconf.RateLimitUnit_name[int32(u)]
		if !known {
			name = strconv.Itoa(int(u))
		}
		add(m, "unit", str(strings.ToLower(name)))
	}
	if rl.GetUnlimited() {
		add(m, "unlimited", boolean(true))
	} else {
		add(m, "requests_per_unit", &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(uint64(rl.GetRequestsPerUnit()), 10)})
	}
	if rl.GetName() != "" {
		add(m, "name", str(rl.GetName()))
	}
	if rs := rl.GetReplaces(); len(rs) > 0 {
		list := &yaml.Node{Kind: yaml.SequenceNode}
		for _, r := range rs {
			e := mapping()
			add(e, "name", str(r.GetName()))
			list.Content = append(list.Content, e)
		}
		add(m, "replaces", list)
	}
	return m
}

func mapping() *yaml.Node { return &yaml.Node{Kind: yaml.MappingNode} }

func add(m *yaml.Node, key string, v *yaml.Node) {
	m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key}, v)
}

// str is a string scalar, double-quoted so that no value ("yes", "1", "*",
// "") is read as anything but the string it is.
func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s, Style: yaml.DoubleQuotedStyle}
}

func boolean(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

// descriptorLines maps the line of each descriptor mapping in data (YAML
// that configNode wrote) to its field path, "descriptors[0].descriptors[1]",
// and the domain's line to "domain".
func descriptorLines(data []byte) map[int]string {
	out := map[int]string{}
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return out
	}
	var walk func(m *yaml.Node, path string)
	walk = func(m *yaml.Node, path string) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			if path == "" && m.Content[i].Value == "domain" {
				out[m.Content[i+1].Line] = "domain"
			}
			if m.Content[i].Value != "descriptors" || m.Content[i+1].Kind != yaml.SequenceNode {
				continue
			}
			for j, d := range m.Content[i+1].Content {
				p := fmt.Sprintf("descriptors[%d]", j)
				if path != "" {
					p = path + "." + p
				}
				out[d.Line] = p
				walk(d, p)
			}
		}
	}
	walk(doc.Content[0], "")
	return out
}

// withoutLines drops the intermediate YAML's lines from problems: a
// problem keeps its resource and field, and "at xds:NAME:LINE" inside a
// message becomes "at xds:NAME descriptors[...]".
func withoutLines(ps descriptors.Problems, lines map[string]map[int]string) descriptors.Problems {
	out := make(descriptors.Problems, len(ps))
	for i, p := range ps {
		p.Line = 0
		for file, m := range lines {
			if !strings.Contains(p.Msg, file+":") {
				continue
			}
			re := regexp.MustCompile(regexp.QuoteMeta(file) + `:(\d+)\b`)
			p.Msg = re.ReplaceAllStringFunc(p.Msg, func(s string) string {
				line, _ := strconv.Atoi(s[len(file)+1:])
				if field, ok := m[line]; ok {
					return file + " " + field
				}
				return file
			})
		}
		out[i] = p
	}
	return out
}
