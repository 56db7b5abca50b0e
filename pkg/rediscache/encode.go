package rediscache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/floodgate/floodgate/pkg/cachestore"
)

// ErrCorrupt is wrapped by the error of a Get that found a stored value it
// cannot read (damaged, or written by a newer version): the Get is a miss,
// and the caller counts the error.
var ErrCorrupt = errors.New("rediscache: corrupt entry")

// encVersion is the first byte of every encoded entry. A decoder meeting
// another version reports ErrCorrupt rather than guessing.
const encVersion = 1

// appendEntry encodes e after dst:
//
//	version byte (1)
//	uvarint status
//	varint stored seconds, uvarint stored nanoseconds (Unix)
//	varint expires seconds, uvarint expires nanoseconds
//	varint initial age (ns)
//	string etag
//	uvarint header count, then name and value strings
//	uvarint tag count, then tag strings
//	string body
//
// where a string is a uvarint length and the bytes.
func appendEntry(dst []byte, e *cachestore.Entry) []byte {
	dst = append(dst, encVersion)
	dst = binary.AppendUvarint(dst, uint64(max(e.Status, 0)))
	dst = appendTime(dst, e.Stored)
	dst = appendTime(dst, e.Expires)
	dst = binary.AppendVarint(dst, int64(e.InitialAge))
	dst = appendString(dst, e.ETag)
	dst = binary.AppendUvarint(dst, uint64(len(e.Header)))
	for _, h := range e.Header {
		dst = appendString(dst, h.Name)
		dst = appendString(dst, h.Value)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.Tags)))
	for _, t := range e.Tags {
		dst = appendString(dst, t)
	}
	dst = binary.AppendUvarint(dst, uint64(len(e.Body)))
	return append(dst, e.Body...)
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = binary.AppendVarint(dst, t.Unix())
	return binary.AppendUvarint(dst, uint64(t.Nanosecond()))
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// decoder reads an encoded entry, from a []byte or a string; the first
// problem sticks in err, after which every read returns zero values. It
// never panics and never allocates more than the input can hold.
type decoder[T ~string | ~[]byte] struct {
	b   T
	err error
}

func (d *decoder[T]) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
}

// raw reads a uvarint as binary.Uvarint does: n <= 0 when it is
// truncated or overflows 64 bits.
func (d *decoder[T]) raw() (uint64, int) {
	var x uint64
	var s uint
	for i := 0; i < len(d.b); i++ {
		if i == binary.MaxVarintLen64 {
			return 0, -(i + 1)
		}
		c := d.b[i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, -(i + 1)
			}
			return x | uint64(c)<<s, i + 1
		}
		x |= uint64(c&0x7f) << s
		s += 7
	}
	return 0, 0
}

func (d *decoder[T]) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := d.raw()
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder[T]) varint(what string) int64 {
	ux := d.uvarint(what)
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x
}

func (d *decoder[T]) bytes(what string) T {
	n := d.uvarint(what)
	if d.err != nil {
		return d.b[:0]
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return d.b[:0]
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// string is a copy from a []byte, a substring (no copy) from a string.
func (d *decoder[T]) string(what string) string { return string(d.bytes(what)) }

// count reads a count of items each taking at least minSize bytes, so a
// corrupt count cannot make the decoder allocate more than the input.
func (d *decoder[T]) count(what string, minSize int) int {
	n := d.uvarint(what)
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail(what)
		return 0
	}
	return int(n)
}

func (d *decoder[T]) time(what string) time.Time {
	sec := d.varint(what)
	nsec := d.uvarint(what)
	if d.err == nil && nsec >= 1e9 {
		d.fail(what)
	}
	if d.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec)).UTC()
}

// decodeEntry decodes what appendEntry wrote. The body aliases b.
func decodeEntry(b []byte) (*cachestore.Entry, error) {
	return decode(b, func(body []byte) []byte { return body })
}

// decodeEntryString decodes a reply: its strings are substrings of s (no
// copies), its body the one copy (a caller may write to Entry.Body).
func decodeEntryString(s string) (*cachestore.Entry, error) {
	return decode(s, func(body string) []byte { return []byte(body) })
}

func decode[T ~string | ~[]byte](b T, body func(T) []byte) (*cachestore.Entry, error) {
	if len(b) == 0 || b[0] != encVersion {
		if len(b) == 0 {
			return nil, fmt.Errorf("%w: empty value", ErrCorrupt)
		}
		return nil, fmt.Errorf("%w: unknown version %d", ErrCorrupt, b[0])
	}
	d := decoder[T]{b: b[1:]}
	e := &cachestore.Entry{}
	status := d.uvarint("status")
	if status > math.MaxInt32 {
		d.fail("status")
	}
	e.Status = int(status)
	e.Stored = d.time("stored time")
	e.Expires = d.time("expiry")
	e.InitialAge = time.Duration(d.varint("initial age"))
	e.ETag = d.string("etag")
	if n := d.count("header count", 2); n > 0 {
		e.Header = make([]cachestore.Header, n)
		for i := range e.Header {
			e.Header[i].Name = d.string("header name")
			e.Header[i].Value = d.string("header value")
		}
	}
	if n := d.count("tag count", 1); n > 0 {
		e.Tags = make([]string, n)
		for i := range e.Tags {
			e.Tags[i] = d.string("tag")
		}
	}
	if bd := d.bytes("body"); len(bd) > 0 && d.err == nil {
		e.Body = body(bd)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}
