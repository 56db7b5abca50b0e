package redisstore

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Counter keys look like
//
//	PREFIX {TTTTTTTT} =BODY        a short quota.Hit.Key, as is
//	PREFIX {TTTTTTTT} #HASH        a long one: base64url(SHA-256(Key))
//
// (without the spaces). TTTTTTTT is the FNV-1a 32 hash of the hit's tag,
// Key[:TagLen] (its domain and first entry), in hex: the Redis Cluster hash
// tag. Every counter of a request whose descriptors share their first entry
// therefore lives in one slot, and one script call decides them all. The
// hash keeps the tag free of '}' (which would end it early) and short.
//
// Keys cannot collide: the prefix has a fixed length and no braces, the tag
// a fixed length, and the body is a function of the Key that is one to one:
// '=' + Key for keys of at most maxRawKey bytes, '#' + a SHA-256 digest
// otherwise, the first byte telling the two forms apart. (Two Keys colliding
// would take a SHA-256 collision.) Whatever bytes the Key holds, the Redis
// key is at most len(prefix) + 10 + 1 + max(maxRawKey, 43) bytes.
const (
	// maxRawKey is the longest Key kept as is. Longer ones are hashed to
	// 43 bytes, which bounds the memory a counter takes whatever the
	// descriptor values are.
	maxRawKey = 96
	tagLen    = 10 // "{" + 8 hex digits + "}"
)

// keyBuilder builds counter keys for one prefix.
type keyBuilder struct {
	prefix string
}

// build returns the Redis key of a hit and its Redis Cluster slot.
func (b keyBuilder) build(key string, tagEnd int) (string, uint16) {
	if tagEnd < 0 || tagEnd > len(key) {
		// A TagLen out of range places the counter by its whole key:
		// correct, only less grouped.
		tagEnd = len(key)
	}
	// FNV-1a, 32 bits.
	sum := uint32(2166136261)
	for i := 0; i < tagEnd; i++ {
		sum ^= uint32(key[i])
		sum *= 16777619
	}

	n := len(b.prefix) + tagLen + 1
	if len(key) <= maxRawKey {
		n += len(key)
	} else {
		n += base64.RawURLEncoding.EncodedLen(sha256.Size)
	}
	// One allocation: the builder's buffer becomes the string.
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(b.prefix)
	sb.WriteByte('{')
	const hexdigits = "0123456789abcdef"
	var tag [8]byte
	for i := range tag {
		tag[i] = hexdigits[(sum>>uint(28-4*i))&0xf]
	}
	sb.Write(tag[:])
	sb.WriteByte('}')
	if len(key) <= maxRawKey {
		sb.WriteByte('=')
		sb.WriteString(key)
	} else {
		d := sha256.Sum256([]byte(key))
		var enc [43]byte
		base64.RawURLEncoding.Encode(enc[:], d[:])
		sb.WriteByte('#')
		sb.Write(enc[:])
	}
	return sb.String(), crc16(tag[:]) % 16384
}

// crc16 is CRC-16/XMODEM, the hash Redis Cluster maps keys to slots with
// (slot = crc16(tag) mod 16384). Computing it here lets the store group a
// request's hits by slot before sending anything.
func crc16(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for i := 0; i < 8; i++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
