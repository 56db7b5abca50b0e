package cachestore

import "math/rand/v2"

// skiplist keeps a host's path groups in path order, so that prefix
// invalidation seeks to the first path at or after the prefix and walks
// only the paths under it: O(log n) to insert, remove or seek.
type skiplist struct {
	head  slNode
	level int
}

const (
	slMaxLevel = 24 // enough for 4^24 paths per host at p = 1/4
)

type slNode struct {
	path string
	g    *group
	next []*slNode // next[0] is the following path
}

func (l *skiplist) init() {
	if l.head.next == nil {
		l.head.next = make([]*slNode, slMaxLevel)
		l.level = 1
	}
}

func randomLevel() int {
	lvl := 1
	for lvl < slMaxLevel && rand.Uint32()&3 == 0 {
		lvl++
	}
	return lvl
}

// insert adds path (which must not be present).
func (l *skiplist) insert(path string, g *group) {
	l.init()
	var update [slMaxLevel]*slNode
	x := &l.head
	for i := l.level - 1; i >= 0; i-- {
		for x.next[i] != nil && x.next[i].path < path {
			x = x.next[i]
		}
		update[i] = x
	}
	lvl := randomLevel()
	for i := l.level; i < lvl; i++ {
		update[i] = &l.head
	}
	if lvl > l.level {
		l.level = lvl
	}
	n := &slNode{path: path, g: g, next: make([]*slNode, lvl)}
	for i := 0; i < lvl; i++ {
		n.next[i] = update[i].next[i]
		update[i].next[i] = n
	}
}

// remove drops path, if present.
func (l *skiplist) remove(path string) {
	l.init()
	var update [slMaxLevel]*slNode
	x := &l.head
	for i := l.level - 1; i >= 0; i-- {
		for x.next[i] != nil && x.next[i].path < path {
			x = x.next[i]
		}
		update[i] = x
	}
	n := x.next[0]
	if n == nil || n.path != path {
		return
	}
	for i := 0; i < len(n.next); i++ {
		update[i].next[i] = n.next[i]
	}
	for l.level > 1 && l.head.next[l.level-1] == nil {
		l.level--
	}
}

// seek returns the first node whose path is at or after p, or nil.
func (l *skiplist) seek(p string) *slNode {
	l.init()
	x := &l.head
	for i := l.level - 1; i >= 0; i-- {
		for x.next[i] != nil && x.next[i].path < p {
			x = x.next[i]
		}
	}
	return x.next[0]
}
