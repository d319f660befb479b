package resp

import (
	"strings"
	"testing"
)

func BenchmarkParseCommand(b *testing.B) {
	cases := []struct {
		name string
		cmd  string
	}{
		{"GET", mb("GET", "user:1000:profile")},
		{"SET64", mb("SET", "user:1000:profile", strings.Repeat("v", 64))},
		{"MSET10", mb("MSET", "k0", "v0", "k1", "v1", "k2", "v2", "k3", "v3", "k4", "v4",
			"k5", "v5", "k6", "v6", "k7", "v7", "k8", "v8", "k9", "v9")},
		{"InlinePING", "PING\r\n"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			buf := []byte(c.cmd)
			args := make([][]byte, 0, 32)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				n, a, _, _, err := ParseCommand(buf, args, DefaultLimits)
				if n != len(buf) || err != nil {
					b.Fatal(n, err)
				}
				args = a
			}
		})
	}
}

func BenchmarkScanner(b *testing.B) {
	cases := []struct {
		name  string
		reply string
	}{
		{"Status", "+OK\r\n"},
		{"Bulk64", "$64\r\n" + strings.Repeat("v", 64) + "\r\n"},
		{"Array100", func() string {
			s := "*100\r\n"
			for i := 0; i < 100; i++ {
				s += "$8\r\nvalue-" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "\r\n"
			}
			return s
		}()},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			buf := []byte(c.reply)
			var s Scanner
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if n, err := s.Scan(buf); n != len(buf) || err != nil {
					b.Fatal(n, err)
				}
			}
		})
	}
}
