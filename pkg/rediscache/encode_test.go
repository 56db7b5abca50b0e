package rediscache

import (
	"errors"
	"testing"
	"time"

	"github.com/floodgate/floodgate/internal/cachestoretest"
	"github.com/floodgate/floodgate/pkg/cachestore"
)

func TestEncodeRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Now()
	for _, e := range []*cachestore.Entry{
		cachestoretest.NewEntry(now, time.Hour, "body", "t1", "t2"),
		{Status: 204},
		{Status: 301, Header: []cachestore.Header{{Name: "location", Value: "/x"}}, Stored: time.Unix(-5, 7), Expires: now, InitialAge: -time.Second},
	} {
		got, err := decodeEntry(appendEntry(nil, e))
		if err != nil {
			t.Fatal(err)
		}
		if d := cachestoretest.SameEntry(got, e); d != "" {
			t.Error(d)
		}
	}
}

func TestDecodeCorrupt(t *testing.T) {
	t.Parallel()
	good := appendEntry(nil, cachestoretest.NewEntry(time.Now(), time.Hour, "body", "t"))
	for i := 0; i < len(good); i++ {
		if _, err := decodeEntry(good[:i]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("truncated to %d bytes: err = %v", i, err)
		}
	}
	if _, err := decodeEntry(append([]byte{2}, good[1:]...)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("version 2: err = %v", err)
	}
	if _, err := decodeEntry(append(good, 0)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("trailing byte: err = %v", err)
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(appendEntry(nil, cachestoretest.NewEntry(time.Now(), time.Hour, "body", "t")))
	f.Add(appendEntry(nil, &cachestore.Entry{}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		// The string decoder, Get's, reads the same.
		es, errs := decodeEntryString(string(b))
		if (err == nil) != (errs == nil) {
			t.Fatalf("[]byte decoder: %v; string decoder: %v", err, errs)
		}
		if err == nil {
			if d := cachestoretest.SameEntry(es, e); d != "" {
				t.Fatal(d)
			}
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// What decodes encodes back to the same entry.
		again, err := decodeEntry(appendEntry(nil, e))
		if err != nil {
			t.Fatal(err)
		}
		if d := cachestoretest.SameEntry(again, e); d != "" {
			t.Fatal(d)
		}
	})
}
