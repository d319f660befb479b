package command

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestKeyIndexesMatchRedis compares KeyIndexes with a live Redis 7.0's
// COMMAND GETKEYS for every line of keyIndexTests. It needs a throwaway
// server and is skipped unless JUPITER_TEST_REDIS_ADDR is set, e.g.
//
//	redis-server --port 7399 --save '' --daemonize yes
//	JUPITER_TEST_REDIS_ADDR=127.0.0.1:7399 go test ./internal/command -run MatchRedis
func TestKeyIndexesMatchRedis(t *testing.T) {
	addr := os.Getenv("JUPITER_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("JUPITER_TEST_REDIS_ADDR not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()

	compared := 0
	for _, tt := range keyIndexTests {
		args := argv(tt.line)
		s := Lookup(args)
		if s == nil || s.Name == "jupiter" {
			continue
		}
		cmd := []any{"COMMAND", "GETKEYS"}
		for _, a := range args {
			cmd = append(cmd, string(a))
		}
		redisKeys, err := rdb.Do(ctx, cmd...).StringSlice()
		if err != nil {
			// Keyless commands, and invocations Redis itself rejects.
			if idx, _ := s.KeyIndexes(args, nil); len(idx) > 0 && !strings.Contains(err.Error(), "Invalid arguments") {
				t.Errorf("%q: Redis: %v; jupiter found keys %v", tt.line, err, idx)
			}
			continue
		}
		idx, err := s.KeyIndexes(args, nil)
		if err != nil {
			t.Errorf("%q: %v", tt.line, err)
			continue
		}
		var ours []string
		for _, i := range idx {
			ours = append(ours, string(args[i]))
		}
		slices.Sort(ours)
		slices.Sort(redisKeys)
		compared++
		if !slices.Equal(ours, redisKeys) {
			t.Errorf("%q: Redis keys %v, jupiter %v", tt.line, redisKeys, ours)
		}
	}
	t.Logf("%d of %d lines compared with COMMAND GETKEYS", compared, len(keyIndexTests))
}

// TestKeyIndexesMatchRedisRandom is a differential test: random argument
// lists built from a small vocabulary (keywords from the key specs, small
// integers, names) for every keyed command, compared with COMMAND GETKEYS
// whenever Redis accepts them. Skipped like TestKeyIndexesMatchRedis.
func TestKeyIndexesMatchRedisRandom(t *testing.T) {
	addr := os.Getenv("JUPITER_TEST_REDIS_ADDR")
	if addr == "" {
		t.Skip("JUPITER_TEST_REDIS_ADDR not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()

	vocab := []string{"0", "1", "2", "3", "-1", "k1", "k2", "k3", "x", "",
		"STORE", "STOREDIST", "STREAMS", "KEYS", "BY", "GET", "LIMIT", "AUTH", "AUTH2", "GROUP", "COUNT", "BLOCK"}
	rng := uint64(1)
	next := func(n int) int {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		return int(rng % uint64(n))
	}
	compared := 0
	for _, s := range All() {
		if !s.hasKeys() || s.Name == "migrate" {
			continue // MIGRATE is refused; keysMigrate mirrors migrateCommand
		}
		name := strings.Split(s.Name, "|")
		for round := 0; round < 300; round++ {
			args := make([][]byte, 0, 12)
			for _, p := range name {
				args = append(args, []byte(p))
			}
			n := -s.Arity
			if s.Arity > 0 {
				n = s.Arity
			} else {
				n += next(7)
			}
			for len(args) < n {
				args = append(args, []byte(vocab[next(len(vocab))]))
			}
			cmd := []any{"COMMAND", "GETKEYS"}
			for _, a := range args {
				cmd = append(cmd, string(a))
			}
			redisKeys, rerr := rdb.Do(ctx, cmd...).StringSlice()
			idx, err := s.KeyIndexes(args, nil)
			if rerr != nil {
				continue
			}
			if s.Name == "sort" && !sortParses(args) {
				// sortGetKeys and the SORT parser disagree on invalid
				// option lists; jupiter follows the parser, and Redis
				// rejects such a SORT anyway.
				continue
			}
			compared++
			if err != nil && len(redisKeys) == 0 {
				// evalGetKeys reports no keys for a bad numkeys; EVAL
				// itself then fails, and jupiter fails first.
				continue
			}
			if errors.Is(err, ErrSyntax) {
				// Redis's own key-spec walk failed too and it fell back
				// to a laxer getkeys proc (xreadGetKeys); the command
				// itself rejects these arguments.
				continue
			}
			if err != nil {
				t.Errorf("%q: Redis keys %q, jupiter error %v", args, redisKeys, err)
				continue
			}
			var ours []string
			for _, i := range idx {
				ours = append(ours, string(args[i]))
			}
			slices.Sort(ours)
			slices.Sort(redisKeys)
			if !slices.Equal(ours, redisKeys) {
				t.Errorf("%q: Redis keys %q, jupiter %q", args, redisKeys, ours)
			}
		}
	}
	t.Logf("%d random invocations compared with COMMAND GETKEYS", compared)
}

// sortParses reports whether SORT's options parse (sortCommandGeneric).
func sortParses(args [][]byte) bool {
	for i := 2; i < len(args); i++ {
		left := len(args) - i - 1
		switch a := args[i]; {
		case equalFold(a, "asc"), equalFold(a, "desc"), equalFold(a, "alpha"):
		case equalFold(a, "limit") && left >= 2:
			i += 2
		case (equalFold(a, "by") || equalFold(a, "get") || equalFold(a, "store")) && left >= 1:
			i++
		default:
			return false
		}
	}
	return true
}
