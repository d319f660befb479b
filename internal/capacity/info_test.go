package capacity

import (
	"os"
	"strings"
	"testing"
)

// TestParseInfoRedis7 reads a whole INFO reply of redis-server 7.0 (CRLF,
// every default section) taken from a node with maxmemory 2mb and 68 keys.
func TestParseInfoRedis7(t *testing.T) {
	b, err := os.ReadFile("testdata/info-redis7.txt")
	if err != nil {
		t.Fatal(err)
	}
	got := ParseInfo(string(b))
	want := Info{UsedMemory: 1078392, MaxMemory: 2097152, MaxMemoryPolicy: "noeviction", Keys: 68, Expires: 0,
		EvictedKeys: 0, ExpiredKeys: 0, KeyspaceHits: 0, KeyspaceMisses: 0, Clients: 3, OpsPerSec: 1, Role: "master"}
	if got != want {
		t.Fatalf("ParseInfo =\n%+v\nwant\n%+v", got, want)
	}
	if r := got.MemoryRatio(); r < 0.514 || r > 0.515 {
		t.Errorf("MemoryRatio = %v, want 1078392/2097152", r)
	}
	if r := got.HitRatio(); r != -1 {
		t.Errorf("HitRatio with no lookups = %v, want -1", r)
	}
}

func TestParseInfoCases(t *testing.T) {
	tests := []struct {
		name, text string
		check      func(Info) string
	}{
		{"empty reply knows nothing", "", func(in Info) string {
			if in != unknownInfo() {
				return "want unknownInfo"
			}
			return ""
		}},
		{"keyspace section without db0 is an empty database", "# Memory\nused_memory:10\n# Keyspace\n", func(in Info) string {
			if in.Keys != 0 || in.Expires != 0 || in.UsedMemory != 10 {
				return "want keys 0, used 10"
			}
			return ""
		}},
		{"no keyspace section: keys unknown", "# Memory\nused_memory:10\n", func(in Info) string {
			if in.Keys != -1 {
				return "want keys -1"
			}
			return ""
		}},
		{"db0 with subexpiry (Redis 7.4), other dbs ignored, LF only",
			"# Keyspace\ndb0:keys=5,expires=2,avg_ttl=100,subexpiry=0\ndb1:keys=9,expires=9,avg_ttl=0\n", func(in Info) string {
				if in.Keys != 5 || in.Expires != 2 {
					return "want keys 5 expires 2"
				}
				return ""
			}},
		{"replica, hits and misses, garbage values", "# Replication\r\nrole:slave\r\n# Stats\r\nkeyspace_hits:3\r\nkeyspace_misses:1\r\nevicted_keys:x\r\nnot a field\r\n", func(in Info) string {
			if in.Role != "slave" || in.KeyspaceHits != 3 || in.KeyspaceMisses != 1 || in.EvictedKeys != -1 {
				return "want role slave, hits 3, misses 1, evicted unknown"
			}
			if in.HitRatio() != 0.75 {
				return "want hit ratio 0.75"
			}
			return ""
		}},
		{"no limit: memory ratio unknown", "used_memory:100\nmaxmemory:0\n", func(in Info) string {
			if in.MemoryRatio() != -1 {
				return "want memory ratio -1 with maxmemory 0"
			}
			return ""
		}},
	}
	for _, tt := range tests {
		in := ParseInfo(tt.text)
		if why := tt.check(in); why != "" {
			t.Errorf("%s: ParseInfo(%q) = %+v: %s", tt.name, strings.ReplaceAll(tt.text, "\n", `\n`), in, why)
		}
	}
}

func FuzzParseInfo(f *testing.F) {
	f.Add("# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n")
	f.Add("used_memory:1\nmaxmemory:2\nrole:master\n")
	f.Fuzz(func(t *testing.T, s string) {
		in := ParseInfo(s)
		if r := in.HitRatio(); r != -1 && (r < 0 || r > 1) && in.KeyspaceHits >= 0 && in.KeyspaceMisses >= 0 {
			t.Fatalf("hit ratio %v out of range for %+v", r, in)
		}
	})
}

func BenchmarkParseInfo(b *testing.B) {
	text, err := os.ReadFile("testdata/info-redis7.txt")
	if err != nil {
		b.Fatal(err)
	}
	s := string(text)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		ParseInfo(s)
	}
}
