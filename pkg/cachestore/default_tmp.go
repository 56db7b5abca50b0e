package cachestore

// DefaultMaxBytes placeholder until the memory store lands (temporary).
const DefaultMaxBytes = 268435456

// MemoryOptions placeholder.
type MemoryOptions struct{ MaxBytes int64 }

// NewMemory placeholder.
func NewMemory(o MemoryOptions) (Store, error) { panic("todo") }
