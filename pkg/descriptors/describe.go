package descriptors

import (
	"fmt"
	"strings"

	"github.com/floodgate/floodgate/pkg/quota"
)

// Summary is the one-line description `sidecar validate` prints for a valid
// domain, e.g. "domain edge: 7 rules from examples/config.yaml".
func (d *Domain) Summary() string {
	noun := "rules"
	if len(d.rules) == 1 {
		noun = "rule"
	}
	return fmt.Sprintf("domain %s: %d %s from %s", d.Name, len(d.rules), noun, strings.Join(d.Files, ", "))
}

// Description is a JSON-friendly view of a Config, served at /debug/config.
type Description struct {
	Domains []DomainDescription `json:"domains"`
}

// DomainDescription describes one domain.
type DomainDescription struct {
	Name  string            `json:"name"`
	Files []string          `json:"files"`
	Rules []RuleDescription `json:"rules"`
}

// RuleDescription describes one rule. Limit fields are omitted for an
// unlimited rule.
type RuleDescription struct {
	Path      []PathEntry `json:"path"`
	StatName  string      `json:"stat_name"`
	Name      string      `json:"name,omitempty"`
	Unlimited bool        `json:"unlimited,omitempty"`
	Algorithm string      `json:"algorithm,omitempty"`
	// RequestsPerUnit is a pointer so that 0 (block everything) shows.
	RequestsPerUnit *uint64 `json:"requests_per_unit,omitempty"`
	Unit            string  `json:"unit,omitempty"`
	// Burst is the token bucket's effective capacity (requests_per_unit
	// when not configured).
	Burst          uint64         `json:"burst,omitempty"`
	Overdraw       bool           `json:"overdraw,omitempty"`
	Shadow         bool           `json:"shadow_mode,omitempty"`
	QuotaMode      bool           `json:"quota_mode,omitempty"`
	DetailedMetric bool           `json:"detailed_metric,omitempty"`
	ValueToMetric  bool           `json:"value_to_metric,omitempty"`
	Replaces       []string       `json:"replaces,omitempty"`
	SharedValue    []string       `json:"shared_value,omitempty"`
	Metadata       map[string]any `json:"metadata,omitempty"`
	// Source is "FILE:LINE" of the rule's descriptor.
	Source string `json:"source"`
}

// Describe returns a JSON-friendly description of every domain and rule.
func (c *Config) Describe() Description {
	desc := Description{Domains: []DomainDescription{}}
	for _, d := range c.Domains() {
		dd := DomainDescription{Name: d.Name, Files: d.Files, Rules: []RuleDescription{}}
		for _, r := range d.rules {
			rd := RuleDescription{
				Path:           r.Path,
				StatName:       r.StatName,
				Name:           r.Name,
				Unlimited:      r.Unlimited,
				Shadow:         r.Shadow,
				QuotaMode:      r.QuotaMode,
				DetailedMetric: r.DetailedMetric,
				ValueToMetric:  r.ValueToMetric,
				Replaces:       r.Replaces,
				Metadata:       r.Metadata,
				Source:         fmt.Sprintf("%s:%d", r.File, r.Line),
			}
			for _, v := range r.SharedValue {
				if v != "" {
					rd.SharedValue = r.SharedValue
					break
				}
			}
			if !r.Unlimited {
				requests := r.Limit.Requests
				rd.RequestsPerUnit = &requests
				rd.Algorithm = r.Limit.Algorithm.String()
				rd.Unit = r.UnitName
				rd.Overdraw = r.Overdraw
				if r.Limit.Algorithm == quota.TokenBucket {
					rd.Burst = r.Limit.Capacity()
				}
			}
			dd.Rules = append(dd.Rules, rd)
		}
		desc.Domains = append(desc.Domains, dd)
	}
	return desc
}
