package cacheconfig

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/floodgate/floodgate/internal/yamlconf"
)

// Load reads a cache config file (--cache-config). A directory is not
// read: the rules are in order, first match wins, and one file keeps that
// order plain.
//
// The error, when not nil, is yamlconf.Problems (descriptors.Problems is
// the same type), listing every problem as FILE:LINE: field: message.
func Load(path string) (*Config, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, yamlconf.Problems{{File: path, Msg: fmt.Sprintf("cannot read cache config: %v", err), Err: err}}
	}
	if info.IsDir() {
		return nil, yamlconf.Problems{{File: path, Msg: "cannot read cache config: a directory; --cache-config takes one YAML file (its rules are tried in order)"}}
	}
	data, err := yamlconf.ReadFile(path)
	if err != nil {
		return nil, yamlconf.Problems{{File: path, Msg: "cannot read cache config: " + err.Error(), Err: err}}
	}
	if len(data) == 0 {
		// A zero-byte file is most likely one being written (a poll can
		// land between its truncation and its write): refusing it keeps
		// the rules in force. A config of no rules says "rules: []".
		return nil, yamlconf.Problems{{File: path, Msg: `the file is empty (write "rules: []" for a config with no rules)`}}
	}
	return Parse(path, data)
}

// Parse reads a cache config from data; file names it in errors. An empty
// file has no rules: nothing is cached.
func Parse(file string, data []byte) (*Config, error) {
	var problems yamlconf.ProblemList
	specs := parseFile(file, data, &problems)
	cfg := &Config{Files: []string{file}}
	nameAt := map[string]int{}
	for j, rs := range specs {
		r := rs.rule
		if first, dup := nameAt[r.Name]; dup {
			problems.Add(yamlconf.Problem{File: file, Line: rs.nameLine, Field: fmt.Sprintf("rules[%d].name", rs.index),
				Msg: fmt.Sprintf("duplicate rule name %q, first at line %d; rule names must be unique (they label metrics)", r.Name, first)})
			continue
		}
		nameAt[r.Name] = rs.nameLine
		for _, earlier := range specs[:j] {
			if covers(earlier.rule, r) {
				problems.Add(yamlconf.Problem{File: file, Line: r.Line, Field: fmt.Sprintf("rules[%d]", rs.index),
					Msg: fmt.Sprintf("never matches: rule %q (line %d) comes first and matches every request this one would; put the narrower rule first", earlier.rule.Name, earlier.rule.Line)})
				break
			}
		}
		cfg.Rules = append(cfg.Rules, r)
	}
	if err := problems.Result(map[string]int{file: 0}); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Summary is the one-line description `sidecar validate` prints for a
// valid cache config, e.g. "cache config: 3 rules (1 public, 1 tenant,
// 1 user) from cache.yaml".
func (c *Config) Summary() string {
	var n [3]int
	for _, r := range c.Rules {
		n[r.Scope]++
	}
	rules := "rules"
	if len(c.Rules) == 1 {
		rules = "rule"
	}
	return fmt.Sprintf("cache config: %d %s (%d public, %d tenant, %d user) from %s",
		len(c.Rules), rules, n[Public], n[Tenant], n[User], strings.Join(c.Files, ", "))
}

// covers says whether rule a matches every request that rule b matches,
// so that b, after a, never applies.
func covers(a, b *Rule) bool {
	if !strings.HasPrefix(b.PathPrefix, a.PathPrefix) {
		return false
	}
	if len(a.Hosts) == 0 {
		return true
	}
	if len(b.Hosts) == 0 {
		return false
	}
	for _, h := range b.Hosts {
		if _, found := slices.BinarySearch(a.Hosts, h); !found {
			return false
		}
	}
	return true
}
