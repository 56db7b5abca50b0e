package sidecar

import (
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/floodgate/floodgate/pkg/authconfig"
	"github.com/floodgate/floodgate/pkg/configsource"
)

// debugStatus is what /debug/config shows: the limits config's status
// with its JSON keys as they have always been, and the auth config's
// under "auth" (absent without --auth-config).
type debugStatus struct {
	configsource.Status
	Auth  *configsource.Status `json:"auth,omitempty"`
	Cache *configsource.Status `json:"cache,omitempty"`
	// GRPCTLS is the gRPC listener's certificates (--grpc-tls-*).
	GRPCTLS *configsource.Status `json:"grpc_tls,omitempty"`
}

// debugConfig serves /debug/config as indented JSON.
func (m *Main) debugConfig(w http.ResponseWriter, r *http.Request) {
	st := debugStatus{Status: m.limits.Status()}
	if m.authSrc != nil {
		a := m.authSrc.Status()
		st.Auth = &a
	}
	if m.cacheSrc != nil {
		c := m.cacheSrc.Status()
		st.Cache = &c
	}
	if m.grpcTLS != nil {
		t := m.grpcTLS.Status()
		st.GRPCTLS = &t
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st)
}

// unitName is a limit's unit as the config spells it.
func unitName(d time.Duration) string {
	switch d {
	case time.Second:
		return "second"
	case time.Minute:
		return "minute"
	case time.Hour:
		return "hour"
	case 24 * time.Hour:
		return "day"
	}
	return d.String()
}

// authDescription is an auth config as /debug/config shows it: no secret.
// API keys are listed by their public id (and tenant, tier, user,
// expiry); their digests are left out, as is any password in a jwks_url.
type authDescription struct {
	Files           []string            `json:"files"`
	APIKeyHeader    string              `json:"api_key_header"`
	APIKeys         []keyDescription    `json:"api_keys"`
	JWT             []issuerDescription `json:"jwt,omitempty"`
	TrustedHops     int                 `json:"trusted_hops"`
	FailedAuthLimit *limitDescription   `json:"failed_auth_limit,omitempty"`
	Policies        []policyDescription `json:"policies"`
}

type keyDescription struct {
	ID      string     `json:"id"`
	Tenant  string     `json:"tenant"`
	Tier    string     `json:"tier"`
	User    string     `json:"user,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
}

type issuerDescription struct {
	Issuer     string   `json:"issuer"`
	Audiences  []string `json:"audiences"`
	JWKSFile   string   `json:"jwks_file,omitempty"`
	JWKSURL    string   `json:"jwks_url,omitempty"`
	Refresh    string   `json:"jwks_refresh,omitempty"`
	Algorithms []string `json:"algorithms"`
	ClockSkew  string   `json:"clock_skew"`
	Claims     struct {
		Tenant string `json:"tenant,omitempty"`
		Tier   string `json:"tier,omitempty"`
		User   string `json:"user,omitempty"`
	} `json:"claims"`
	Tenants []string `json:"tenants,omitempty"`
}

type limitDescription struct {
	RequestsPerUnit uint64 `json:"requests_per_unit"`
	Unit            string `json:"unit"`
}

type policyDescription struct {
	Name             string            `json:"name"`
	Source           string            `json:"source"`
	Hosts            []string          `json:"hosts,omitempty"`
	PathPrefix       string            `json:"path_prefix,omitempty"`
	Methods          []string          `json:"methods,omitempty"`
	Auth             string            `json:"auth"`
	Tiers            []string          `json:"tiers,omitempty"`
	StripCredentials bool              `json:"strip_credentials,omitempty"`
	RateLimit        *rateLimitDescrip `json:"rate_limit,omitempty"`
}

type rateLimitDescrip struct {
	Domain      string                `json:"domain"`
	Descriptors [][]map[string]string `json:"descriptors"`
}

func describeAuth(c *authconfig.Config) authDescription {
	d := authDescription{Files: c.Files, APIKeyHeader: c.APIKeys.Header, TrustedHops: c.TrustedHops,
		APIKeys: []keyDescription{}, Policies: []policyDescription{}}
	for _, k := range c.APIKeys.Keys.Keys() {
		kd := keyDescription{ID: k.ID, Tenant: k.Tenant, Tier: k.Tier, User: k.User}
		if !k.Expires.IsZero() {
			e := k.Expires
			kd.Expires = &e
		}
		d.APIKeys = append(d.APIKeys, kd)
	}
	for _, is := range c.JWT {
		id := issuerDescription{Issuer: is.Issuer, Audiences: is.Audiences, JWKSFile: is.JWKSFile,
			Algorithms: is.Algorithms, ClockSkew: is.ClockSkew.String(), Tenants: is.Tenants}
		if is.JWKSURL != "" {
			id.JWKSURL = is.JWKSURL
			if u, err := url.Parse(is.JWKSURL); err == nil {
				id.JWKSURL = u.Redacted()
			}
			id.Refresh = is.Refresh.String()
		}
		id.Claims.Tenant, id.Claims.Tier, id.Claims.User = is.Claims.Tenant, is.Claims.Tier, is.Claims.User
		d.JWT = append(d.JWT, id)
	}
	if l := c.FailedAuthLimit; l != nil {
		d.FailedAuthLimit = &limitDescription{RequestsPerUnit: l.Requests, Unit: unitName(l.Unit)}
	}
	for _, p := range c.Policies {
		pd := policyDescription{Name: p.Name, Source: p.File + ":" + strconv.Itoa(p.Line), Hosts: p.Hosts,
			PathPrefix: p.PathPrefix, Methods: p.Methods, Auth: p.Auth.String(), StripCredentials: p.StripCredentials}
		for t := range p.Tiers {
			pd.Tiers = append(pd.Tiers, t)
		}
		slices.Sort(pd.Tiers)
		if rl := p.RateLimit; rl != nil {
			r := &rateLimitDescrip{Domain: rl.Domain, Descriptors: [][]map[string]string{}}
			for _, tpls := range rl.Descriptors {
				var entries []map[string]string
				for i := range tpls {
					entries = append(entries, map[string]string{"key": tpls[i].Key, "value": tpls[i].String()})
				}
				r.Descriptors = append(r.Descriptors, entries)
			}
			pd.RateLimit = r
		}
		d.Policies = append(d.Policies, pd)
	}
	return d
}
