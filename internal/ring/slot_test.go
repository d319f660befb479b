package ring

import (
	"bytes"
	"testing"
)

// crc16Bitwise is the textbook bit-at-a-time CRC16-XMODEM (poly 0x1021,
// init 0, no reflection, no final xor), the reference for the table.
func crc16Bitwise(b []byte) uint16 {
	var crc uint16
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func TestCRC16Table(t *testing.T) {
	if len(crcTable) != 512 {
		t.Fatalf("crcTable has %d bytes, want 512", len(crcTable))
	}
	for i := range 256 {
		want := crc16Bitwise([]byte{byte(i)})
		got := uint16(crcTable[2*i])<<8 | uint16(crcTable[2*i+1])
		if got != want {
			t.Errorf("crcTable[%d] = %#04x, want %#04x", i, got, want)
		}
	}
}

func TestCRC16(t *testing.T) {
	// The check value from the Redis Cluster specification.
	if got := crc16([]byte("123456789")); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#04x, want 0x31C3", got)
	}
	if got := crc16(nil); got != 0 {
		t.Errorf("crc16(nil) = %#04x, want 0", got)
	}
	for _, s := range []string{"a", "foo", "hello world", "\x00\xff\x80", "{user1000}.following"} {
		if got, want := crc16([]byte(s)), crc16Bitwise([]byte(s)); got != want {
			t.Errorf("crc16(%q) = %#04x, bitwise %#04x", s, got, want)
		}
	}
}

// Slots verified against redis-server 7.0 `CLUSTER KEYSLOT` (cluster mode);
// the test itself does not need Redis.
var keySlotVectors = []struct {
	key  string
	slot uint16
}{
	{"foo", 12182},
	{"bar", 5061},
	{"zap", 6469},
	{"{user1000}.following", 3443},
	{"{user1000}.followers", 3443},
	{"foo{}{bar}", 8363},     // first tag empty: whole key
	{"foo{{bar}}zap", 4015},  // tag is "{bar"
	{"{bar", 4015},           // ... which is hashed whole here (no '}')
	{"foo{bar}{zap}", 5061},  // tag is "bar", same as key "bar"
	{"", 0},                  // empty key
	{"a", 15495},             //
	{"{a}", 15495},           // tag "a"
	{"123456789", 12739},     // 0x31C3 & 0x3FFF
	{"hello world", 15332},   //
	{"{}", 15257},            // empty tag: whole key
	{"}{", 12793},            // '}' before '{' is not a tag
	{"a{b", 13340},           // unterminated: whole key
	{"a}b{c}", 7365},         // tag "c"
	{"{{}}", 4092},           // tag "{"
	{"user:1000", 1649},      //
	{"jupiter", 7976},        //
	{"10.0.0.1:6379", 12652}, //
	{"key:{tag}:x", 8338},    // tag "tag"
	{"tag", 8338},            //
	{"\x00\xff\x80{\x01}", 4129},
}

func TestSlotVectors(t *testing.T) {
	for _, v := range keySlotVectors {
		if got := Slot([]byte(v.key)); got != v.slot {
			t.Errorf("Slot(%q) = %d, want %d", v.key, got, v.slot)
		}
	}
}

func TestHashTag(t *testing.T) {
	for _, tc := range []struct{ key, tag string }{
		{"", ""},
		{"foo", "foo"},
		{"{user1000}.following", "user1000"},
		{"foo{}{bar}", "foo{}{bar}"},
		{"foo{{bar}}zap", "{bar"},
		{"foo{bar}{zap}", "bar"},
		{"{", "{"},
		{"}", "}"},
		{"{}", "{}"},
		{"}{", "}{"},
		{"a{b", "a{b"},
		{"a}b{c}", "c"},
		{"{{}}", "{"},
		{"x{y}", "y"},
		{"{y}x", "y"},
		{"a{}b}", "a{}b}"}, // the first '}' after '{' decides, even if another follows
	} {
		key := []byte(tc.key)
		got := HashTag(key)
		if string(got) != tc.tag {
			t.Errorf("HashTag(%q) = %q, want %q", tc.key, got, tc.tag)
		}
		if len(got) > 0 && !bytes.Contains(key, got) {
			t.Errorf("HashTag(%q) = %q is not part of the key", tc.key, got)
		}
		if Slot(key) != crc16Bitwise([]byte(tc.tag))&(Slots-1) {
			t.Errorf("Slot(%q) does not hash %q", tc.key, tc.tag)
		}
	}
}

func TestSlotNoAlloc(t *testing.T) {
	keys := [][]byte{[]byte("foo"), []byte("{user1000}.following"), bytes.Repeat([]byte("x"), 100)}
	allocs := testing.AllocsPerRun(100, func() {
		for _, k := range keys {
			_ = Slot(k)
			_ = HashTag(k)
		}
	})
	if allocs != 0 {
		t.Errorf("Slot/HashTag allocate %.1f times per run, want 0", allocs)
	}
}

// redisHashTag is a line-by-line port of keyHashSlot in Redis' cluster.c,
// an independent reference for HashTag.
func redisHashTag(key []byte) []byte {
	keylen := len(key)
	var s, e int
	for s = 0; s < keylen; s++ {
		if key[s] == '{' {
			break
		}
	}
	if s == keylen {
		return key
	}
	for e = s + 1; e < keylen; e++ {
		if key[e] == '}' {
			break
		}
	}
	if e == keylen || e == s+1 {
		return key
	}
	return key[s+1 : e]
}

// FuzzSlot: Slot never panics and is < Slots; HashTag is a sub-slice of the
// key and follows the Redis rule; the table agrees with the bitwise CRC.
func FuzzSlot(f *testing.F) {
	for _, v := range keySlotVectors {
		f.Add([]byte(v.key))
	}
	f.Fuzz(func(t *testing.T, key []byte) {
		s := Slot(key)
		if s >= Slots {
			t.Fatalf("Slot(%q) = %d >= %d", key, s, Slots)
		}
		tag := HashTag(key)
		if !bytes.Contains(key, tag) {
			t.Fatalf("HashTag(%q) = %q is not a substring", key, tag)
		}
		if want := crc16Bitwise(tag) & (Slots - 1); s != want {
			t.Fatalf("Slot(%q) = %d, bitwise CRC of tag gives %d", key, s, want)
		}
		if want := redisHashTag(key); !bytes.Equal(tag, want) {
			t.Fatalf("HashTag(%q) = %q, want %q", key, tag, want)
		}
		if len(tag) < len(key) {
			// A strict tag must be brace-delimited in the key and brace-free
			// on the right.
			if bytes.IndexByte(tag, '}') >= 0 || len(tag) == 0 {
				t.Fatalf("HashTag(%q) = %q: bad tag", key, tag)
			}
		}
	})
}
