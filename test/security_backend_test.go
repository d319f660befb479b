package test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
	"github.com/redis/go-redis/v9"
)

// secSpread writes n keys through jupiter (client c) and checks, directly on
// every node (clients direct, in order), that each node got some of them and
// that they add up to n. It then reads them back through jupiter with MGET.
func secSpread(t *testing.T, c *redis.Client, direct []*redis.Client, prefix string, n int) {
	t.Helper()
	ctx := ctxT(t)
	keys := make([]string, n)
	if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range keys {
			keys[i] = fmt.Sprintf("%s%d", prefix, i)
			p.Set(ctx, keys[i], keys[i], 0)
		}
		return nil
	}); err != nil {
		t.Fatalf("SET %d keys through jupiter: %v", n, err)
	}
	total := int64(0)
	for i, d := range direct {
		k, err := d.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Fatalf("KEYS on node %d: %v", i, err)
		}
		if len(k) == 0 {
			t.Errorf("node %d holds none of the %d keys", i, n)
		}
		total += int64(len(k))
	}
	if total != int64(n) {
		t.Errorf("nodes hold %d keys, want %d", total, n)
	}
	vals, err := c.MGet(ctx, keys...).Result()
	if err != nil {
		t.Fatalf("MGET through jupiter: %v", err)
	}
	for i, v := range vals {
		if v != keys[i] {
			t.Fatalf("MGET[%d] = %v, want %q", i, v, keys[i])
		}
	}
}

// secDirect returns go-redis clients straight to the nodes with their passwords.
func secDirect(t *testing.T, rs []*testenv.Redis, pws []string) []*redis.Client {
	t.Helper()
	out := make([]*redis.Client, len(rs))
	for i, r := range rs {
		out[i] = newClientWith(t, &redis.Options{Addr: r.Addr, Password: pws[i]})
	}
	return out
}

// wantNodeError fails unless err is jupiter's error naming node addr and
// containing every one of wants, and it never quotes a secret.
func wantNodeError(t *testing.T, what string, err error, addr string, secrets []string, wants ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded, want an error naming %s", what, addr)
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, addr) {
		t.Errorf("%s: error %q does not name the node %s", what, msg, addr)
	}
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: error %q does not say %q", what, msg, w)
		}
	}
	for _, s := range secrets {
		if strings.Contains(msg, s) {
			t.Errorf("%s: error %q reveals a secret", what, msg)
		}
	}
}

// TestSecurityBackendAuth puts jupiter in front of redis-servers that need
// AUTH (Memorystore's AUTH string): one shared password, from a flag and from
// a file; a per-node password map; an ACL user; a wrong or missing password,
// which must fail every command on the node with an error that names the node
// and never the password.
func TestSecurityBackendAuth(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	start3 := func(pws ...string) []*testenv.Redis {
		var rs []*testenv.Redis
		for _, pw := range pws {
			rs = append(rs, testenv.StartRedis(t, "--requirepass", pw))
		}
		return rs
	}
	addrs := func(rs []*testenv.Redis) string {
		var a []string
		for _, r := range rs {
			a = append(a, r.Addr)
		}
		return strings.Join(a, ",")
	}
	same := []string{secBackendPW, secBackendPW, secBackendPW}
	shared := start3(same...)

	t.Run("SharedPassword", func(t *testing.T) {
		extra := testenv.StartRedis(t, "--requirepass", secBackendPW)
		j := testenv.StartJupiter(t, nil, "--backends", addrs(shared), "--backend-password", secBackendPW, "--log-level", "debug")
		c := newClient(t, j.Addr)
		secSpread(t, c, secDirect(t, shared, same), "bauth:", 300)
		if n, err := c.DBSize(ctx).Result(); err != nil || n < 300 {
			t.Errorf("DBSIZE = %d, %v", n, err)
		}
		// The control path (PING before JUPITER ADD) authenticates too.
		if err := c.Do(ctx, "JUPITER", "ADD", extra.Addr).Err(); err != nil {
			t.Errorf("JUPITER ADD of a node with the same AUTH string: %v", err)
		}
		if msg := secWaitFor(3*time.Second, func() string {
			if st := secStatus(t, c); st["nodes_up"] != "4" {
				return fmt.Sprintf("JUPITER STATUS = %v, want nodes_up:4", st)
			}
			return ""
		}); msg != "" {
			t.Error(msg)
		}
		secNoSecrets(t, j, secBackendPW)
	})

	t.Run("PasswordFile", func(t *testing.T) {
		f := secWriteFile(t, "backend-password", secBackendPW+"\n")
		j := testenv.StartJupiter(t, nil, "--backends", addrs(shared), "--backend-password-file", f)
		c := newClient(t, j.Addr)
		secSpread(t, c, secDirect(t, shared, same), "bfile:", 100)
		secNoSecrets(t, j, secBackendPW)
	})

	t.Run("WrongPassword", func(t *testing.T) {
		const wrong = "wrong-backend-pw-91c3"
		extra := testenv.StartRedis(t, "--requirepass", secBackendPW)
		j := testenv.StartJupiter(t, nil, "--backends", addrs(shared), "--backend-password", wrong, "--log-level", "debug")
		c := newClientWith(t, &redis.Options{Addr: j.Addr, MaxRetries: -1})
		secrets := []string{wrong, secBackendPW}
		for i := 0; i < 6; i++ { // keys on every node
			err := c.Set(ctx, fmt.Sprint("bwrong:", i), "v", 0).Err()
			if err == nil {
				t.Fatalf("SET with a wrong backend password succeeded")
			}
			msg := err.Error()
			if i == 0 {
				t.Logf("client sees: %s", msg)
			}
			named := false
			for _, r := range shared {
				named = named || strings.Contains(msg, r.Addr)
			}
			if !named || !strings.Contains(msg, "AUTH") {
				t.Errorf("SET with a wrong backend password: %q, want an AUTH error naming the node", msg)
			}
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("error %q reveals a password", msg)
				}
			}
		}
		err := c.Do(ctx, "JUPITER", "ADD", extra.Addr).Err()
		wantNodeError(t, "JUPITER ADD with a wrong backend password", err, extra.Addr, secrets)
		st := secStatus(t, c)
		if st["nodes_up"] != "0" || strings.Contains(st["nodes"], extra.Addr) {
			t.Errorf("JUPITER STATUS = %v, want nodes_up:0 and the ring unchanged", st)
		}
		secNoSecrets(t, j, secrets...)
	})

	t.Run("PasswordMap", func(t *testing.T) {
		pws := []string{"map-pw-a-1f", "map-pw-b-2e", "map-pw-default-3d"}
		rs := start3(pws...)
		// Node c is not in the map: it uses --backend-password.
		m := secWriteFile(t, "passwords", "# per-node AUTH strings\n\n"+
			rs[0].Addr+" "+pws[0]+"\n"+rs[1].Addr+"   "+pws[1]+"  \n")
		j := testenv.StartJupiter(t, nil, "--backends", addrs(rs), "--backend-password-map", m,
			"--backend-password", pws[2], "--log-level", "debug")
		c := newClient(t, j.Addr)
		secSpread(t, c, secDirect(t, rs, pws), "bmap:", 300)
		secNoSecrets(t, j, pws...)
	})

	t.Run("PasswordMapOneWrong", func(t *testing.T) {
		pws := []string{"map1-pw-a-4c", "map1-pw-b-5b", "map1-pw-c-6a"}
		rs := start3(pws...)
		m := secWriteFile(t, "passwords", rs[0].Addr+" "+pws[0]+"\n"+rs[1].Addr+" not-"+pws[1]+"\n"+rs[2].Addr+" "+pws[2]+"\n")
		j := testenv.StartJupiter(t, nil, "--backends", addrs(rs), "--backend-password-map", m)
		c := newClientWith(t, &redis.Options{Addr: j.Addr, MaxRetries: -1})
		direct := secDirect(t, rs, pws)
		ok, bad := 0, 0
		for i := 0; i < 60; i++ {
			k := fmt.Sprint("bmap1:", i)
			err := c.Set(ctx, k, "v", 0).Err()
			if err == nil {
				ok++
				if n, _ := direct[1].Exists(ctx, k).Result(); n != 0 {
					t.Errorf("%s was stored on the node whose password is wrong", k)
				}
				continue
			}
			bad++
			wantNodeError(t, "SET "+k, err, rs[1].Addr, pws, "AUTH")
		}
		if ok == 0 || bad == 0 {
			t.Errorf("%d SETs worked and %d failed; want the wrong node's keys (only) to fail", ok, bad)
		}
		secNoSecrets(t, j, pws...)
	})

	t.Run("ACLUser", func(t *testing.T) {
		const pw = "acl-pw-7e2b"
		r := testenv.StartRedis(t, "--user", "jupiter", "on", ">"+pw, "~*", "&*", "+@all", "--user", "default", "off")
		j := testenv.StartJupiter(t, nil, "--backends", r.Addr, "--backend-username", "jupiter", "--backend-password", pw)
		c := newClient(t, j.Addr)
		if err := c.Set(ctx, "acl:k", "v", 0).Err(); err != nil {
			t.Fatalf("SET through jupiter with --backend-username: %v", err)
		}
		d := newClientWith(t, &redis.Options{Addr: r.Addr, Username: "jupiter", Password: pw})
		if v, err := d.Get(ctx, "acl:k").Result(); err != nil || v != "v" {
			t.Errorf("node holds acl:k = %q, %v", v, err)
		}
		secNoSecrets(t, j, pw)
	})
}

// TestSecurityBackendMissingPassword runs jupiter without --backend-password
// in front of nodes that require one. Every command on them fails, and the
// error must name the node and say that the node refused jupiter, not read
// like the client's own AUTH problem: a bare "NOAUTH Authentication required."
// from jupiter tells an application to AUTH to jupiter, which cannot help,
// and JUPITER STATUS must not report such nodes as up.
func TestSecurityBackendMissingPassword(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t, "--requirepass", secBackendPW)
	j := testenv.StartJupiter(t, nil, "--backends", r.Addr)
	ctx := ctxT(t)
	c := newClientWith(t, &redis.Options{Addr: j.Addr, MaxRetries: -1})
	err := c.Set(ctx, "nopw:k", "v", 0).Err()
	wantNodeError(t, "SET with no --backend-password", err, r.Addr, []string{secBackendPW})
	if st := secStatus(t, c); st["nodes_up"] != "0" {
		t.Errorf("JUPITER STATUS = %v: a node that refuses every command is reported up", st)
	}
}

// secStatus returns JUPITER STATUS through a go-redis client.
func secStatus(t *testing.T, c *redis.Client) map[string]string {
	t.Helper()
	s, err := c.Do(ctxT(t), "JUPITER", "STATUS").Text()
	if err != nil {
		t.Fatalf("JUPITER STATUS: %v", err)
	}
	return testenv.ParseStatus(s)
}
