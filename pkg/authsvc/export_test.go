package authsvc

import (
	"time"

	"github.com/floodgate/floodgate/pkg/authconfig"
)

// StandIns are a test's versions of pkg/authconfig's calls (Config.Match,
// KeySet.Lookup, Template.Append), for as long as this branch lacks them.
type StandIns struct {
	Match  func(c *authconfig.Config, host, path, method string) *authconfig.Policy
	Lookup func(ks *authconfig.KeySet, key string, now time.Time) *authconfig.Key
	Render func(t *authconfig.Template, b []byte, v *authconfig.Vars) []byte
}

// UseStandIns makes s call f instead of pkg/authconfig (before SetConfig).
func UseStandIns(s *Service, f StandIns) {
	s.funcs = configFuncs{match: f.Match, lookup: f.Lookup, render: f.Render}
	s.standIns = true
}
