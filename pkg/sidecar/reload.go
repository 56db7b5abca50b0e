package sidecar

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/floodgate/floodgate/pkg/descriptors"
	"github.com/floodgate/floodgate/pkg/engine"
)

// reloader watches the config path and swaps in each valid new config. It
// polls a fingerprint of the path (names, sizes, modification times and
// inodes, following symlinks) instead of relying on inotify, because a
// Kubernetes ConfigMap update is an atomic swap of the ..data symlink that
// inotify watches on the old target never see.
type reloader struct {
	path string
	opts descriptors.Options
	svc  *engine.Engine
	log  *slog.Logger

	reloads *prometheus.CounterVec
	lastOK  prometheus.Gauge

	mu       sync.Mutex
	print    uint64
	loadedAt time.Time
	lastErr  string
}

func newReloader(path string, opts descriptors.Options, svc *engine.Engine, log *slog.Logger, reg prometheus.Registerer) *reloader {
	r := &reloader{
		path: path, opts: opts, svc: svc, log: log,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "floodgate", Subsystem: "config", Name: "reloads_total",
			Help: "Config reloads by result (success or error).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "floodgate", Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "When the config in force was loaded.",
		}),
		loadedAt: time.Now(),
	}
	r.reloads.WithLabelValues("success")
	r.reloads.WithLabelValues("error")
	reg.MustRegister(r.reloads, r.lastOK)
	r.lastOK.SetToCurrentTime()
	r.print, _ = fingerprint(path)
	return r
}

// run checks the path every interval until ctx ends.
func (r *reloader) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.check()
		}
	}
}

// check reloads when the path's fingerprint changed since the last look.
func (r *reloader) check() {
	fp, err := fingerprint(r.path)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && fp == r.print {
		return
	}
	r.print = fp
	cfg, lerr := descriptors.Load(r.path, r.opts)
	if lerr == nil && err != nil {
		lerr = err
	}
	if lerr != nil {
		r.reloads.WithLabelValues("error").Inc()
		r.lastErr = lerr.Error()
		r.log.Error("config reload failed; the previous config keeps serving",
			"config", r.path, "errors", strings.Split(lerr.Error(), "\n"))
		return
	}
	r.svc.SetConfig(cfg)
	r.reloads.WithLabelValues("success").Inc()
	r.lastOK.SetToCurrentTime()
	r.loadedAt = time.Now()
	r.lastErr = ""
	names := make([]string, 0)
	for _, d := range cfg.Domains() {
		names = append(names, d.Name)
	}
	r.log.Info("config reloaded", "config", r.path, "domains", names)
}

// debugConfig is /debug/config's answer.
type debugConfig struct {
	Path            string    `json:"path"`
	LoadedAt        time.Time `json:"loaded_at"`
	LastReloadError string    `json:"last_reload_error,omitempty"`
	Config          any       `json:"config"`
}

func (r *reloader) describe() debugConfig {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := debugConfig{Path: r.path, LoadedAt: r.loadedAt, LastReloadError: r.lastErr}
	if cfg := r.svc.Config(); cfg != nil {
		d.Config = cfg.Describe()
	}
	return d
}

// fingerprint hashes what identifies the config files' content at path
// without reading them.
func fingerprint(path string) (uint64, error) {
	h := fnv.New64a()
	add := func(name string, fi fs.FileInfo) {
		fmt.Fprintf(h, "%s\x00%d\x00%d\x00%v\x00", name, fi.Size(), fi.ModTime().UnixNano(), inode(fi))
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	if !fi.IsDir() {
		add(path, fi)
		return h.Sum64(), nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return 0, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		full := filepath.Join(path, name)
		if strings.HasPrefix(name, "..") {
			// ConfigMap internals: the ..data link's target changes on update.
			if target, err := os.Readlink(full); err == nil {
				fmt.Fprintf(h, "%s->%s\x00", name, target)
			}
			continue
		}
		fi, err := os.Stat(full)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		add(name, fi)
	}
	return h.Sum64(), errors.Join(errs...)
}

// inode is the file's inode number, so that a file replaced by another of the
// same size and time still counts as a change.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
