package command

import (
	"bytes"
	"testing"
)

// splitFuzz turns fuzz input into arguments: NUL-separated, so any byte
// sequence (spaces, empty arguments, binary) can appear in an argument.
func splitFuzz(data []byte) [][]byte {
	if len(data) == 0 {
		return nil
	}
	return bytes.Split(data, []byte{0})
}

func fuzzSeeds(f *testing.F) {
	for _, tt := range keyIndexTests {
		f.Add(bytes.Join(argv(tt.line), []byte{0}))
	}
	for _, s := range []string{
		"EVAL\x00s\x00-1", "EVAL\x00s\x009223372036854775807\x00k", "XREAD\x00STREAMS",
		"XREAD\x00COUNT\x00STREAMS\x00a", "MIGRATE\x00h\x00p\x00\x000\x001\x00KEYS",
		"GEORADIUS\x00k\x001\x002\x003\x00km\x00STORE", "SORT\x00k\x00STORE", "OBJECT",
		"PING\x00hash=k", "SCAN\x000\x00hash=",
	} {
		f.Add([]byte(s))
	}
}

// FuzzKeyIndexes: for any arguments, arity-checked or not, KeyIndexes never
// panics, returns indexes within [1, len(args)) in strictly increasing order,
// or an error that is a Redis error line; Refuses and ClassFor never panic.
func FuzzKeyIndexes(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		args := splitFuzz(data)
		s := Lookup(args)
		if s == nil {
			return
		}
		_, _ = s.Refuses(args)
		_ = s.ClassFor(args)
		_ = s.CheckArity(len(args))
		idx, err := s.KeyIndexes(args, make([]int, 0, 4))
		if err != nil {
			if len(idx) != 0 {
				t.Fatalf("%q: error %v with keys %v", args, err, idx)
			}
			if msg := err.Error(); len(msg) < 5 || msg[:4] != "ERR " || bytes.ContainsAny([]byte(msg), "\r\n") {
				t.Fatalf("%q: %q is not a Redis error line", args, msg)
			}
			return
		}
		prev := 0
		for _, i := range idx {
			if i < 1 || i >= len(args) || i <= prev {
				t.Fatalf("%q: bad key indexes %v", args, idx)
			}
			prev = i
		}
	})
}

// FuzzHashOverride: the override never panics, is only found when the last
// argument carries the prefix and the rest satisfies the arity, and returns
// a non-empty suffix of the last argument.
func FuzzHashOverride(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		args := splitFuzz(data)
		s := Lookup(args)
		key, ok := HashOverride(s, args, "hash=")
		if !ok {
			if key != nil {
				t.Fatalf("%q: key %q without override", args, key)
			}
			return
		}
		last := args[len(args)-1]
		if s == nil || len(key) == 0 || !bytes.HasPrefix(last, []byte("hash=")) ||
			!bytes.Equal(last[len("hash="):], key) || !s.CheckArity(len(args)-1) {
			t.Fatalf("%q: bad override %q", args, key)
		}
		if _, ok := HashOverride(s, args, ""); ok {
			t.Fatalf("%q: override with an empty prefix", args)
		}
	})
}
