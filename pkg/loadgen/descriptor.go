package loadgen

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// KeyPlaceholder in a descriptor key or value is replaced by the key index
// drawn for each request, from 0 to Options.Keys-1.
const KeyPlaceholder = "{n}"

// Entry is one key=value pair of a descriptor template.
type Entry struct {
	Key   string
	Value string
}

// Descriptor is the template of one rate-limit descriptor: its entries in
// order. A key or value may contain KeyPlaceholder.
type Descriptor []Entry

// ParseDescriptor parses the --descriptor syntax `k=v[,k=v...]`. Only the
// first '=' of an entry separates key from value, so values may contain '='
// (but not ','). An empty value is allowed; an empty key is not, because no
// server accepts one and the point of the tool is to measure decisions, not
// rejections. The error names the flag and the offending entry.
func ParseDescriptor(s string) (Descriptor, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("--descriptor %q: empty, want k=v[,k=v...]", s)
	}
	parts := strings.Split(s, ",")
	d := make(Descriptor, 0, len(parts))
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		switch {
		case !ok:
			return nil, fmt.Errorf("--descriptor %q: entry %d %q has no '=', want k=v[,k=v...]", s, i+1, p)
		case k == "":
			return nil, fmt.Errorf("--descriptor %q: entry %d %q has an empty key", s, i+1, p)
		}
		d = append(d, Entry{Key: k, Value: v})
	}
	return d, nil
}

// String formats d back into the --descriptor syntax.
func (d Descriptor) String() string {
	var b strings.Builder
	for i, e := range d {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(e.Key)
		b.WriteByte('=')
		b.WriteString(e.Value)
	}
	return b.String()
}

// templated reports whether any key or value holds KeyPlaceholder.
func (d Descriptor) templated() bool {
	for _, e := range d {
		if strings.Contains(e.Key, KeyPlaceholder) || strings.Contains(e.Value, KeyPlaceholder) {
			return true
		}
	}
	return false
}

// expand returns d with KeyPlaceholder replaced by n.
func (d Descriptor) expand(n int) Descriptor {
	s := strconv.Itoa(n)
	out := make(Descriptor, len(d))
	for i, e := range d {
		out[i] = Entry{
			Key:   strings.ReplaceAll(e.Key, KeyPlaceholder, s),
			Value: strings.ReplaceAll(e.Value, KeyPlaceholder, s),
		}
	}
	return out
}

// errNoDescriptor is returned when no --descriptor was given.
var errNoDescriptor = errors.New("--descriptor: at least one is required")
