package cachestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// DefaultMaxBytes is MemoryOptions.MaxBytes when it is zero (256 MiB, the
// default of --cache-max-bytes).
const DefaultMaxBytes int64 = 268435456

// ErrTooLarge is returned by Put for an entry that could never fit the
// store (its accounted bytes exceed MemoryOptions.MaxBytes).
var ErrTooLarge = errors.New("cachestore: entry larger than the store")

// keyOverhead is what the memory store accounts per entry beyond
// Entry.Size and the bytes of its key and variant id: the maps, list links
// and index slots that hold it, and the Go allocations of the entry
// itself. Measured: 50,000 entries with two headers and one Vary name
// took 774 bytes of heap each beyond what a 160-byte overhead accounted,
// whatever the body's size (16 B to 1 KiB), so that --cache-max-bytes
// bounded the heap at about 2.7 times itself for small entries. With this
// figure the accounted bytes are the heap's.
const keyOverhead = 934

// MemoryOptions configure NewMemory.
type MemoryOptions struct {
	// MaxBytes bounds the bytes held, counted as each entry's Size plus
	// its key and a fixed overhead; the least recently used entries are
	// evicted to stay under it. Zero means DefaultMaxBytes.
	MaxBytes int64
}

// Memory is a Store in process memory: least recently used entries are
// evicted to keep it under MaxBytes, and an expired entry is dropped when
// a Get finds it or eviction reaches it. It is safe for concurrent use.
//
// Get returns the stored *Entry itself, without copying: callers must treat
// it, its Header, Body and Tags as read only. Likewise Put keeps e: the
// caller must not change it afterwards.
type Memory struct {
	max int64

	mu      sync.Mutex
	cost    int64 // accounted bytes (sizes plus overheads), bounded by max
	bytes   int64 // sum of Entry.Size, for Stats
	entries int64
	keys    map[Key]*keyState
	hosts   map[string]*hostIndex
	tags    map[string]map[*node]struct{}
	lru     node // sentinel: lru.next is the most recently used
}

var _ Store = (*Memory)(nil)

// keyState is what one Key holds: its Vary names and its variants.
type keyState struct {
	key      Key
	vary     []string
	variants map[string]*node
	group    *group
}

// group is one host+path: every Key with them, by Primary.
type group struct {
	host, path string
	keys       map[string]*keyState
}

// hostIndex is a host's path groups, by exact path and in path order (for
// prefix walks).
type hostIndex struct {
	groups map[string]*group
	paths  skiplist
}

// node is one stored entry (one variant of one Key).
type node struct {
	e          *Entry
	ks         *keyState
	variant    string
	size, cost int64
	prev, next *node
}

// NewMemory returns an empty memory store.
func NewMemory(o MemoryOptions) (*Memory, error) {
	if o.MaxBytes < 0 {
		return nil, fmt.Errorf("cachestore: MemoryOptions.MaxBytes is %d; it must be positive, or 0 for the default %d", o.MaxBytes, DefaultMaxBytes)
	}
	m := &Memory{
		max:   o.MaxBytes,
		keys:  make(map[Key]*keyState),
		hosts: make(map[string]*hostIndex),
		tags:  make(map[string]map[*node]struct{}),
	}
	if m.max == 0 {
		m.max = DefaultMaxBytes
	}
	m.lru.next, m.lru.prev = &m.lru, &m.lru
	return m, nil
}

// Get returns the fresh entry of the request's variant (read only, see
// Memory). A hit allocates nothing for variant ids up to 256 bytes.
func (m *Memory) Get(_ context.Context, k Key, req []Header, now time.Time) (*Entry, error) {
	var buf [256]byte
	m.mu.Lock()
	defer m.mu.Unlock()
	ks := m.keys[k]
	if ks == nil {
		return nil, nil
	}
	vid := AppendVariantID(buf[:0], ks.vary, req)
	n := ks.variants[string(vid)]
	if n == nil {
		return nil, nil
	}
	if !now.Before(n.e.Expires) {
		m.remove(n)
		return nil, nil
	}
	m.unlink(n)
	m.pushFront(n)
	return n.e, nil
}

// Put stores e (which the store keeps: see Memory) for the variant that
// vary and req give, evicting least recently used entries to make room.
func (m *Memory) Put(_ context.Context, k Key, vary []string, req []Header, e *Entry) error {
	if e == nil {
		return errors.New("cachestore: put: nil entry")
	}
	vid := VariantID(vary, req)
	size := int64(e.Size())
	cost := size + int64(len(k.Host)+len(k.Path)+len(k.Primary)+len(vid)) + keyOverhead
	if cost > m.max {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, cost, m.max)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if ks := m.keys[k]; ks != nil {
		if !sameNames(ks.vary, vary) {
			for _, n := range ks.variants {
				m.remove(n)
			}
		} else if old := ks.variants[vid]; old != nil {
			m.remove(old)
		}
	}
	ks := m.keys[k]
	if ks == nil {
		ks = m.newKey(k, vary)
	}
	n := &node{e: e, ks: ks, variant: vid, size: size, cost: cost}
	ks.variants[vid] = n
	for _, t := range e.Tags {
		set := m.tags[t]
		if set == nil {
			set = make(map[*node]struct{})
			m.tags[t] = set
		}
		set[n] = struct{}{}
	}
	m.pushFront(n)
	m.cost += cost
	m.bytes += size
	m.entries++
	for m.cost > m.max {
		// The new node is at the front and fits alone: this stops before it.
		m.remove(m.lru.prev)
	}
	return nil
}

// newKey adds an empty Key to the indexes.
func (m *Memory) newKey(k Key, vary []string) *keyState {
	h := m.hosts[k.Host]
	if h == nil {
		h = &hostIndex{groups: make(map[string]*group)}
		m.hosts[k.Host] = h
	}
	g := h.groups[k.Path]
	if g == nil {
		g = &group{host: k.Host, path: k.Path, keys: make(map[string]*keyState)}
		h.groups[k.Path] = g
		h.paths.insert(k.Path, g)
	}
	names := make([]string, len(vary))
	for i, v := range vary {
		names[i] = strings.ToLower(v)
	}
	ks := &keyState{key: k, vary: names, variants: make(map[string]*node), group: g}
	g.keys[k.Primary] = ks
	m.keys[k] = ks
	return ks
}

// sameNames reports whether stored (lower case) and vary name the same
// headers in the same order, which is what makes variant ids comparable.
func sameNames(stored, vary []string) bool {
	if len(stored) != len(vary) {
		return false
	}
	for i := range stored {
		if !asciiEqualFold(stored[i], vary[i]) {
			return false
		}
	}
	return true
}

// remove drops one entry and whatever index slot it leaves empty.
func (m *Memory) remove(n *node) {
	m.unlink(n)
	m.cost -= n.cost
	m.bytes -= n.size
	m.entries--
	for _, t := range n.e.Tags {
		if set := m.tags[t]; set != nil {
			delete(set, n)
			if len(set) == 0 {
				delete(m.tags, t)
			}
		}
	}
	ks := n.ks
	delete(ks.variants, n.variant)
	if len(ks.variants) > 0 {
		return
	}
	delete(m.keys, ks.key)
	g := ks.group
	delete(g.keys, ks.key.Primary)
	if len(g.keys) > 0 {
		return
	}
	h := m.hosts[g.host]
	delete(h.groups, g.path)
	h.paths.remove(g.path)
	if len(h.groups) == 0 {
		delete(m.hosts, g.host)
	}
}

func (m *Memory) unlink(n *node) {
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next = nil, nil
}

func (m *Memory) pushFront(n *node) {
	n.prev = &m.lru
	n.next = m.lru.next
	m.lru.next.prev = n
	m.lru.next = n
}

// Invalidate removes the entries sel selects: whole path groups (every
// Primary and variant) by exact path or prefix, and tagged entries. It
// walks the selected groups in path order, never every entry.
func (m *Memory) Invalidate(_ context.Context, sel Selector) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var groups []*group
	hosts := func(f func(*hostIndex)) {
		if sel.Host != "" {
			if h := m.hosts[sel.Host]; h != nil {
				f(h)
			}
			return
		}
		for _, h := range m.hosts {
			f(h)
		}
	}
	hosts(func(h *hostIndex) {
		for _, p := range sel.Paths {
			if g := h.groups[p]; g != nil {
				groups = append(groups, g)
			}
		}
		for _, p := range sel.Prefixes {
			for sn := h.paths.seek(p); sn != nil && strings.HasPrefix(sn.path, p); sn = sn.next[0] {
				groups = append(groups, sn.g)
			}
		}
	})
	removed := 0
	seen := make(map[*group]bool, len(groups))
	for _, g := range groups {
		// A group selected twice (a path and a prefix) is removed once.
		if seen[g] {
			continue
		}
		seen[g] = true
		for _, ks := range g.keys {
			for _, n := range ks.variants {
				m.remove(n)
				removed++
			}
		}
	}
	for _, t := range sel.Tags {
		for n := range m.tags[t] {
			m.remove(n)
			removed++
		}
	}
	return removed, nil
}

// Stats returns what the store holds now, expired entries not yet dropped
// included.
func (m *Memory) Stats(context.Context) (Stats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return Stats{Entries: m.entries, Bytes: m.bytes}, nil
}
