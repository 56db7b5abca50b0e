package sidecar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"

	"github.com/floodgate/floodgate/pkg/cacheconfig"
	"github.com/floodgate/floodgate/pkg/cachestore"
	"github.com/floodgate/floodgate/pkg/configsource"
	"github.com/floodgate/floodgate/pkg/extprocsvc"
	"github.com/floodgate/floodgate/pkg/rediscache"
	"github.com/floodgate/floodgate/pkg/respcache"
)

// cacheDoor serves Envoy's ext_proc with the cache rules that come from
// source. Without --cache-config (svc nil) it is no door at all.
func cacheDoor(svc *extprocsvc.Service, source *configsource.Source[*cacheconfig.Config]) door {
	if svc == nil {
		return door{}
	}
	return door{
		register: func(g *grpc.Server) { extprocv3.RegisterExternalProcessorServer(g, svc) },
		health:   []string{extprocv3.ExternalProcessor_ServiceDesc.ServiceName},
		run:      []func(context.Context) error{source.Run},
		ready: func() error {
			if !source.Snapshot().Loaded {
				return errors.New("no cache config loaded")
			}
			return nil
		},
	}
}

// newCacheSource is the cache config's source: the file, polled.
func (m *Main) newCacheSource(metrics *configsource.Metrics) *configsource.Source[*cacheconfig.Config] {
	s := m.settings
	return configsource.New(configsource.NewFile(s.Cache.Config, s.ReloadEvery, cacheconfig.Load), configsource.Options[*cacheconfig.Config]{
		Describe: describeCache,
		Summary:  func(c *cacheconfig.Config) []any { return []any{"rules", len(c.Rules)} },
		Metrics:  metrics,
		Name:     "cache",
		Log:      m.log,
	})
}

// newCache builds the cache engine and its door over the store the backend
// selects: Redis (sharing the limiter's client) or memory.
func (m *Main) newCache(be backend) (*respcache.Engine, *extprocsvc.Service, error) {
	s := m.settings
	var store cachestore.Store
	if be.redis != nil {
		st, err := rediscache.New(be.redis, rediscache.Options{KeyPrefix: s.Redis.KeyPrefix})
		if err != nil {
			return nil, nil, err
		}
		store = st
	} else {
		st, err := cachestore.NewMemory(cachestore.MemoryOptions{MaxBytes: s.Cache.MaxBytes})
		if err != nil {
			return nil, nil, err
		}
		store = st
	}
	eng, err := respcache.New(respcache.Options{
		Store:         store,
		MaxEntryBytes: s.Cache.MaxEntryBytes,
		CollapseWait:  s.Cache.CollapseWait,
		Registerer:    m.registry,
		Log:           m.log,
	})
	if err != nil {
		return nil, nil, err
	}
	svc, err := extprocsvc.New(eng)
	if err != nil {
		return nil, nil, err
	}
	return eng, svc, nil
}

// defaultMaxRecvMsgSize is grpc-go's own receive limit.
const defaultMaxRecvMsgSize = 4 << 20

// maxRecvMsgSize is the gRPC receive limit: grpc-go's default, or with
// the cache, room for a whole body of --cache-max-entry-bytes plus its
// message's headers.
func (m *Main) maxRecvMsgSize() int {
	if m.cache == nil {
		return defaultMaxRecvMsgSize
	}
	return max(defaultMaxRecvMsgSize, m.cache.MaxEntryBytes()+1<<20)
}

// readAdminToken reads --admin-token-file (nil without one).
func readAdminToken(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--admin-token-file: %w", err)
	}
	tok := bytes.TrimSpace(data)
	if len(tok) == 0 {
		return nil, fmt.Errorf("--admin-token-file %s: the file is empty", path)
	}
	sum := sha256.Sum256(tok)
	return sum[:], nil
}

// adminOnly lets a request reach h when it comes from a loopback peer, or,
// with --admin-token-file, when it carries that token as a bearer token
// (compared in constant time; then loopback alone is not enough).
func (m *Main) adminOnly(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.adminToken != nil {
			tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
			if !ok || subtle.ConstantTimeCompare(sum[:], m.adminToken) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="floodgate-admin"`)
				http.Error(w, "admin endpoint: a valid bearer token is required", http.StatusUnauthorized)
				return
			}
		} else if !loopbackPeer(r.RemoteAddr) {
			http.Error(w, "admin endpoint: loopback peers only (set --admin-token-file to allow others)", http.StatusForbidden)
			return
		}
		h(w, r)
	})
}

// loopbackPeer says whether a RemoteAddr is a loopback address.
func loopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// purgeRequest is POST /cache/purge's body.
type purgeRequest struct {
	Tags  []string `json:"tags"`
	Paths []string `json:"paths"`
}

// maxPurgeBody bounds a purge request's body.
const maxPurgeBody = 1 << 20

// purge serves POST /cache/purge: {"tags": [...]} and/or {"paths": [...]}
// (exact paths, every host) remove entries; the answer is {"removed": N}.
func (m *Main) purge(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPurgeBody))
	dec.DisallowUnknownFields()
	var req purgeRequest
	if err := dec.Decode(&req); err != nil {
		purgeError(w, http.StatusBadRequest, "body: "+err.Error()+` (want {"tags": [...]} or {"paths": [...]})`)
		return
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		purgeError(w, http.StatusBadRequest, "body: one JSON object expected")
		return
	}
	if len(req.Tags) == 0 && len(req.Paths) == 0 {
		purgeError(w, http.StatusBadRequest, `body: give "tags" or "paths"`)
		return
	}
	for _, p := range req.Paths {
		if !strings.HasPrefix(p, "/") {
			purgeError(w, http.StatusBadRequest, fmt.Sprintf("paths: %q does not start with /", p))
			return
		}
	}
	for _, t := range req.Tags {
		if t == "" {
			purgeError(w, http.StatusBadRequest, "tags: an empty tag")
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	n, err := m.cache.Purge(ctx, cachestore.Selector{Paths: req.Paths, Tags: req.Tags})
	if err != nil {
		purgeError(w, http.StatusServiceUnavailable, "cache store: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]int{"removed": n})
}

func purgeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// cacheDescription is a cache config as /debug/config shows it.
type cacheDescription struct {
	Files []string          `json:"files"`
	Rules []ruleDescription `json:"rules"`
}

type ruleDescription struct {
	Name        string   `json:"name"`
	Source      string   `json:"source"`
	Hosts       []string `json:"hosts,omitempty"`
	PathPrefix  string   `json:"path_prefix"`
	Scope       string   `json:"scope"`
	TTL         string   `json:"ttl"`
	MaxTTL      string   `json:"max_ttl"`
	KeyHeaders  []string `json:"key_headers,omitempty"`
	IgnoreQuery []string `json:"ignore_query,omitempty"`
	Invalidates []string `json:"invalidates,omitempty"`
}

func describeCache(c *cacheconfig.Config) any {
	d := cacheDescription{Files: c.Files, Rules: make([]ruleDescription, 0, len(c.Rules))}
	for _, r := range c.Rules {
		d.Rules = append(d.Rules, ruleDescription{
			Name: r.Name, Source: fmt.Sprintf("%s:%d", r.File, r.Line), Hosts: r.Hosts, PathPrefix: r.PathPrefix,
			Scope: r.Scope.String(), TTL: r.TTL.String(), MaxTTL: r.MaxTTL.String(),
			KeyHeaders: r.KeyHeaders, IgnoreQuery: r.IgnoreQuery, Invalidates: r.Invalidates,
		})
	}
	return d
}
