package authconfig

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/floodgate/floodgate/internal/yamlconf"
)

// Load reads an auth config: a YAML file, or every *.yaml and *.yml file
// (any letter case) of a directory, read in name order (names starting
// with '.' are skipped, symbolic links followed, subdirectories not read,
// as for --config). It then reads the keys files that api_keys.files names
// and checks the jwks_file of each issuer; both are relative to the file
// that names them. In a directory, a file that an api_keys.files entry
// names is a keys file, not an auth file.
//
// Several auth files in a directory merge: api_keys, client_address and
// failed_auth_limit may each be given in one file only; jwt entries and
// policies add up in file name order (so policies in 10-api.yaml are tried
// before those in 20-web.yaml). Policy names and issuers are unique across
// the files.
//
// The error, when not nil, is descriptors.Problems (the same type as
// yamlconf.Problems), listing every problem as FILE:LINE: field: message.
func Load(path string) (*Config, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, yamlconf.Problems{{File: path, Msg: fmt.Sprintf("cannot read auth config: %v", err), Err: err}}
	}
	if !info.IsDir() {
		data, err := yamlconf.ReadFile(path)
		if err != nil {
			return nil, yamlconf.Problems{{File: path, Msg: "cannot read auth config: " + err.Error(), Err: err}}
		}
		if len(data) == 0 {
			return nil, yamlconf.Problems{{File: path, Msg: emptyAuth}}
		}
		return build([]source{{name: path, data: data}}, yamlconf.ReadFile, false)
	}
	files, err := yamlconf.ReadDir(path)
	if err != nil {
		return nil, yamlconf.Problems{{File: path, Msg: fmt.Sprintf("cannot read auth config directory: %v", err), Err: err}}
	}
	sources := make([]source, 0, len(files))
	for _, f := range files { // sorted by name
		src := source{name: f.Path, data: f.Data}
		if f.Err != nil {
			src.err = fmt.Errorf("cannot read auth config: %w", f.Err)
		} else if len(f.Data) == 0 {
			src.err = errors.New(emptyAuth)
		}
		sources = append(sources, src)
	}
	return build(sources, yamlconf.ReadFile, true)
}

// A zero-byte auth or keys file is most likely one being written (a poll
// can land between its truncation and its write): refusing it keeps the
// config in force, where loading it would drop every policy (every request
// 403) or every key (every key 401). A file that says so has no policies
// or keys: "policies: []", "keys: []".
const (
	emptyAuth = `the file is empty (write "policies: []" for an auth config with no policies)`
	emptyKeys = `the file is empty (write "keys: []" for a keys file with no keys)`
)

// Parse compiles one auth file's contents; name is used in problems and
// the paths it names (keys files, jwks_file) are relative to it. readFile
// reads those files (nil: the file system, at most 8 MiB a file).
func Parse(name string, data []byte, readFile func(string) ([]byte, error)) (*Config, error) {
	return build([]source{{name: name, data: data}}, readFile, false)
}

// source is one auth file: its contents, or why they could not be read.
type source struct {
	name string
	data []byte
	err  error
}

// build parses auth files (inDir: the files of one directory, where keys
// files named by others are set aside), reads the files they name, and
// compiles the Config.
func build(sources []source, read func(string) ([]byte, error), inDir bool) (*Config, error) {
	if read == nil {
		read = yamlconf.ReadFile
	}
	type parsed struct {
		src      source
		spec     *authSpec
		problems yamlconf.ProblemList
	}
	all := make([]*parsed, len(sources))
	keysNamed := map[string]bool{}
	for i, src := range sources {
		pd := &parsed{src: src}
		if src.err == nil {
			pd.spec = parseAuth(src.name, src.data, &pd.problems)
			if pd.spec.apiKeys != nil {
				for _, ref := range pd.spec.apiKeys.files {
					keysNamed[filepath.Clean(ref.path)] = true
				}
			}
		}
		all[i] = pd
	}
	var problems yamlconf.ProblemList
	order := map[string]int{}
	note := func(name string) {
		if _, ok := order[name]; !ok {
			order[name] = len(order)
		}
	}
	cfg := &Config{APIKeys: APIKeys{Header: DefaultHeader, Keys: &KeySet{byDigest: map[[32]byte]*Key{}}}}
	var specs []*authSpec
	for _, pd := range all {
		if inDir && keysNamed[filepath.Clean(pd.src.name)] {
			continue // a keys file; read as one below
		}
		note(pd.src.name)
		cfg.Files = append(cfg.Files, pd.src.name)
		if pd.src.err != nil {
			problems.Add(yamlconf.Problem{File: pd.src.name, Msg: pd.src.err.Error(), Err: pd.src.err})
			continue
		}
		for _, p := range pd.problems.Found() {
			problems.Add(p)
		}
		specs = append(specs, pd.spec)
	}
	c := compiler{cfg: cfg, problems: &problems, read: read, note: note}
	c.merge(specs)
	c.readKeys()
	c.readJWKS()
	c.checkPolicies()
	if err := problems.Result(order); err != nil {
		return nil, err
	}
	return cfg, nil
}

// compiler joins parsed auth files into a Config.
type compiler struct {
	cfg      *Config
	problems *yamlconf.ProblemList
	read     func(string) ([]byte, error)
	note     func(file string)

	apiKeys     *apiKeysSpec
	apiKeysFile string
	jwks        []fileRef // parallel to cfg.JWT
	policies    []*policySpec
	issuerAt    map[string]string // issuer -> FILE:LINE
}

func (c *compiler) add(file string, line int, field, format string, args ...any) {
	c.problems.Add(yamlconf.Problem{File: file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// merge joins the files' sections: the single ones from one file only,
// jwt entries and policies in file order.
func (c *compiler) merge(specs []*authSpec) {
	where := map[string]string{} // section -> FILE:LINE where first given
	once := func(s *authSpec, section string, at *sectionAt) bool {
		if at == nil {
			return false
		}
		if first, dup := where[section]; dup {
			c.add(s.name, at.line, section, "also given at %s; in a directory, %s may be in one file only (jwt entries and policies add up)", first, section)
			return false
		}
		where[section] = fmt.Sprintf("%s:%d", s.name, at.line)
		return true
	}
	c.issuerAt = map[string]string{}
	policyAt := map[string]string{}
	for _, s := range specs {
		if s.apiKeys != nil && once(s, "api_keys", &s.apiKeys.sectionAt) {
			c.apiKeys, c.apiKeysFile = s.apiKeys, s.name
			c.cfg.APIKeys.Header = s.apiKeys.header
		}
		if once(s, "client_address", s.clientAddress) {
			c.cfg.TrustedHops = s.trustedHops
		}
		if once(s, "failed_auth_limit", s.failedAuthLimit) {
			c.cfg.FailedAuthLimit = s.limit
		}
		for i, iss := range s.jwt {
			if first, dup := c.issuerAt[iss.Issuer]; dup {
				c.add(s.name, iss.Line, strings.TrimSuffix(s.jwks[i].field, "jwks_file")+"issuer",
					"issuer %q is also configured at %s; give each issuer once", iss.Issuer, first)
				continue
			}
			c.issuerAt[iss.Issuer] = fmt.Sprintf("%s:%d", s.name, iss.Line)
			c.cfg.JWT = append(c.cfg.JWT, iss)
			c.jwks = append(c.jwks, s.jwks[i])
		}
		for _, ps := range s.policies {
			pol := ps.policy
			if first, dup := policyAt[pol.Name]; dup {
				c.add(s.name, ps.nameLine, fmt.Sprintf("policies[%d].name", ps.index),
					"duplicate policy name %q, first at %s; policy names must be unique", pol.Name, first)
				continue
			}
			policyAt[pol.Name] = fmt.Sprintf("%s:%d", s.name, pol.Line)
			c.policies = append(c.policies, ps)
			c.cfg.Policies = append(c.cfg.Policies, pol)
		}
	}
}

// readKeys reads the keys files and fills the KeySet; ids and digests are
// unique across all of them.
func (c *compiler) readKeys() {
	if c.apiKeys == nil {
		return
	}
	type at struct {
		file string
		line int
		id   string
	}
	byID := map[string]at{}
	byDigest := map[[32]byte]at{}
	read := map[string]string{}
	for _, ref := range c.apiKeys.files {
		if first, dup := read[filepath.Clean(ref.path)]; dup {
			c.add(c.apiKeysFile, ref.line, ref.field, "keys file %s is already named at %s", ref.path, first)
			continue
		}
		read[filepath.Clean(ref.path)] = fmt.Sprintf("%s:%d", c.apiKeysFile, ref.line)
		data, err := c.read(ref.path)
		if err != nil {
			c.add(c.apiKeysFile, ref.line, ref.field, "cannot read keys file: %v", withPath(ref.path, err))
			continue
		}
		if len(data) == 0 {
			c.add(ref.path, 0, "", emptyKeys)
			continue
		}
		c.note(ref.path)
		c.cfg.Files = append(c.cfg.Files, ref.path)
		for _, ks := range parseKeys(ref.path, data, c.problems) {
			k := ks.key
			if first, dup := byID[k.ID]; dup {
				c.add(ks.file, ks.id, ks.field+".id", "duplicate key id %q, first at %s:%d; ids must be unique", k.ID, first.file, first.line)
				continue
			}
			if first, dup := byDigest[k.digest]; dup {
				// Never the digest itself: it is as good as a password hash.
				c.add(ks.file, ks.sha, ks.field+".sha256", "the same digest as key id %q at %s:%d; each key needs its own (sidecar keys new)", first.id, first.file, first.line)
				continue
			}
			byID[k.ID] = at{ks.file, ks.line, k.ID}
			byDigest[k.digest] = at{ks.file, ks.line, k.ID}
			c.cfg.APIKeys.Keys.byDigest[k.digest] = k
		}
	}
}

// readJWKS checks that every jwks_file can be read and holds a JWKS, and
// makes its path absolute.
func (c *compiler) readJWKS() {
	for i := range c.cfg.JWT {
		iss, ref := &c.cfg.JWT[i], c.jwks[i]
		if ref.path == "" {
			continue
		}
		data, err := c.read(ref.path)
		if err != nil {
			c.add(iss.File, ref.line, ref.field, "cannot read JWKS file: %v", withPath(ref.path, err))
			continue
		}
		if msg := checkJWKS(data); msg != "" {
			c.add(iss.File, ref.line, ref.field, "jwks_file %s: %s", ref.path, msg)
		}
		if !contains(c.cfg.Files, ref.path) {
			c.cfg.Files = append(c.cfg.Files, ref.path)
		}
		if abs, err := filepath.Abs(ref.path); err == nil {
			iss.JWKSFile = abs
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// checkPolicies checks what a policy needs from the other sections.
func (c *compiler) checkPolicies() {
	hasKeys, hasJWT := c.apiKeys != nil, len(c.cfg.JWT) > 0
	for _, ps := range c.policies {
		pol := ps.policy
		field := fmt.Sprintf("policies[%d].auth", ps.index)
		switch {
		case pol.Auth == AuthAPIKey && !hasKeys:
			c.add(pol.File, ps.authLine, field, "auth: api_key needs an api_keys section")
		case pol.Auth == AuthJWT && !hasJWT:
			c.add(pol.File, ps.authLine, field, "auth: jwt needs at least one jwt issuer")
		case pol.Auth == AuthAny && !hasKeys && !hasJWT:
			c.add(pol.File, ps.authLine, field, "auth: any needs an api_keys section or a jwt issuer")
		}
	}
}

// withPath names path in a read error that does not (the file system's
// errors do; yamlconf.ErrTooLarge does not).
func withPath(path string, err error) string {
	msg := err.Error()
	if strings.Contains(msg, path) {
		return msg
	}
	return path + ": " + msg
}
