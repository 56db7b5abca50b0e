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

// decoder reads an encoded entry; the first problem sticks in err, after
// which every read returns zero values. It never panics and never
// allocates more than the input can hold.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: bad %s", ErrCorrupt, what)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes(what string) []byte {
	n := d.uvarint(what)
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(what)
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string(what string) string { return string(d.bytes(what)) }

// count reads a count of items each taking at least minSize bytes, so a
// corrupt count cannot make the decoder allocate more than the input.
func (d *decoder) count(what string, minSize int) int {
	n := d.uvarint(what)
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail(what)
		return 0
	}
	return int(n)
}

func (d *decoder) time(what string) time.Time {
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
	if len(b) == 0 || b[0] != encVersion {
		if len(b) == 0 {
			return nil, fmt.Errorf("%w: empty value", ErrCorrupt)
		}
		return nil, fmt.Errorf("%w: unknown version %d", ErrCorrupt, b[0])
	}
	d := decoder{b: b[1:]}
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
	if body := d.bytes("body"); len(body) > 0 {
		e.Body = body
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return e, nil
}
