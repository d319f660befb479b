package test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alphauslabs/jupiter/test/testenv"
	redigo "github.com/gomodule/redigo/redis"
	"github.com/redis/go-redis/v9"
)

// TestSecurityBackendTLS runs jupiter against TLS-only redis-servers (with
// AUTH, like Memorystore with in-transit encryption) using test-generated
// certificates: an IP SAN certificate, a Common-Name-only certificate (how
// Memorystore names the instance), a certificate for another name, one
// signed by a CA jupiter does not trust (refused: verification is never
// skipped), --backend-tls-server-name, and a CA file rotated under a running
// jupiter.
func TestSecurityBackendTLS(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	ca := testenv.NewCA(t, "backend CA")
	pw := []string{"--requirepass", secBackendPW}
	start := func(t *testing.T, caFile string, r *testenv.Redis, args ...string) *redis.Client {
		t.Helper()
		j := testenv.StartJupiter(t, nil, append([]string{"--backends", r.Addr, "--backend-tls-ca", caFile,
			"--backend-password", secBackendPW, "--log-level", "debug"}, args...)...)
		t.Cleanup(func() { secNoSecrets(t, j, secBackendPW) })
		return newClientWith(t, &redis.Options{Addr: j.Addr, MaxRetries: -1})
	}
	works := func(t *testing.T, c *redis.Client, r *testenv.Redis, cert *testenv.Cert, key string) {
		t.Helper()
		if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
			t.Fatalf("SET through jupiter over TLS: %v", err)
		}
		if v, err := c.Get(ctx, key).Result(); err != nil || v != "v" {
			t.Fatalf("GET through jupiter over TLS = %q, %v", v, err)
		}
		// The key really is on the TLS node.
		// (A CN-only certificate fails Go's name check: verify the chain only.)
		roots := cert.CA.Pool()
		d := newClientWith(t, &redis.Options{Addr: r.Addr, Password: secBackendPW, TLSConfig: &tls.Config{
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots})
				return err
			}}})
		if v, err := d.Get(ctx, key).Result(); err != nil || v != "v" {
			t.Errorf("node holds %s = %q, %v", key, v, err)
		}
	}
	refused := func(t *testing.T, c *redis.Client, addr string, wants ...string) {
		t.Helper()
		for i := 0; i < 2; i++ { // the first dial's error, then the remembered one
			start := time.Now()
			err := c.Get(ctx, "tls:refused").Err()
			wantNodeError(t, "GET on an untrusted node", err, addr, []string{secBackendPW}, wants...)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("GET on an untrusted node took %v", d)
			}
			if i == 0 && err != nil {
				t.Logf("client sees: %v", err)
			}
		}
		if st := secStatus(t, c); st["nodes_up"] != "0" {
			t.Errorf("JUPITER STATUS = %v, want the untrusted node down", st)
		}
	}

	t.Run("IPSAN", func(t *testing.T) {
		cert := ca.ServerCert()
		r := testenv.StartRedisTLS(t, cert, pw...)
		works(t, start(t, ca.File, r), r, cert, "tls:ipsan")
	})

	t.Run("CommonNameOnly", func(t *testing.T) {
		cert := ca.CNOnlyCert() // CN=127.0.0.1, no SAN: Memorystore's shape
		r := testenv.StartRedisTLS(t, cert, pw...)
		works(t, start(t, ca.File, r), r, cert, "tls:cn")
	})

	t.Run("CommonNameOtherHost", func(t *testing.T) {
		cert := ca.Issue(testenv.CertSpec{CommonName: "10.1.2.3"})
		r := testenv.StartRedisTLS(t, cert, pw...)
		refused(t, start(t, ca.File, r), r.Addr, "10.1.2.3")
	})

	// A certificate whose subjectAltName names another host must be refused
	// even though its Common Name matches: the Common Name is a fallback for
	// certificates without SANs only (RFC 6125 6.4.4; what Go and browsers do).
	t.Run("SANOtherHostCNMatches", func(t *testing.T) {
		cert := ca.Issue(testenv.CertSpec{CommonName: "127.0.0.1", IPs: []net.IP{net.IPv4(10, 1, 2, 3)}})
		r := testenv.StartRedisTLS(t, cert, pw...)
		refused(t, start(t, ca.File, r), r.Addr, "certificate")
	})

	t.Run("ServerName", func(t *testing.T) {
		cert := ca.Issue(testenv.CertSpec{CommonName: "redis", DNSNames: []string{"redis.internal"}})
		r := testenv.StartRedisTLS(t, cert, pw...)
		c := start(t, ca.File, r, "--backend-tls-server-name", "redis.internal")
		if err := c.Set(ctx, "tls:sn", "v", 0).Err(); err != nil {
			t.Errorf("SET with --backend-tls-server-name: %v", err)
		}
		refused(t, start(t, ca.File, r), r.Addr, "certificate")
	})

	t.Run("UntrustedCA", func(t *testing.T) {
		other := testenv.NewCA(t, "someone else's CA")
		cert := other.ServerCert()
		r := testenv.StartRedisTLS(t, cert, pw...)
		c := start(t, ca.File, r)
		refused(t, c, r.Addr, "TLS", "x509")
		// Nor can it be added to the ring.
		extra := testenv.StartRedisTLS(t, other.ServerCert(), pw...)
		err := c.Do(ctx, "JUPITER", "ADD", extra.Addr).Err()
		wantNodeError(t, "JUPITER ADD of an untrusted node", err, extra.Addr, []string{secBackendPW}, "x509")
	})

	t.Run("PlaintextNode", func(t *testing.T) {
		r := testenv.StartRedis(t, pw...)
		refused(t, start(t, ca.File, r), r.Addr, "TLS")
	})

	t.Run("CARotation", func(t *testing.T) {
		caA, caB := testenv.NewCA(t, "CA A"), testenv.NewCA(t, "CA B")
		certA := caA.ServerCert()
		r := testenv.StartRedisTLS(t, certA, pw...)
		caFile := filepath.Join(t.TempDir(), "backend-ca.pem") // the mounted Secret
		testenv.WriteFileAtomic(t, caFile, caA.PEM)
		c := start(t, caFile, r)
		works(t, c, r, certA, "tls:rot:a")

		// The Secret is updated first: the running connections stay up.
		testenv.WriteFileAtomic(t, caFile, caB.PEM)
		if err := c.Set(ctx, "tls:rot:between", "v", 0).Err(); err != nil {
			t.Errorf("SET after the CA file changed, before the node did: %v", err)
		}
		// Then the node restarts with a certificate from CA B on the same
		// port: jupiter redials, re-reads the CA file, and works again.
		certB := caB.ServerCert()
		certB.WriteTo(t, certA.CertFile, certA.KeyFile)
		r.Restart()
		if msg := secWaitFor(8*time.Second, func() string {
			if err := c.Set(ctx, "tls:rot:b", "v", 0).Err(); err != nil {
				return err.Error()
			}
			return ""
		}); msg != "" {
			t.Fatalf("jupiter did not recover after the CA rotation: %s", msg)
		}
		certB.CertFile, certB.KeyFile = certA.CertFile, certA.KeyFile
		works(t, c, r, certB, "tls:rot:b2")

		// And the new CA file is really what verifies: a node back on an A
		// certificate is now refused.
		certA.WriteTo(t, certA.CertFile, certA.KeyFile)
		r.Restart()
		if msg := secWaitFor(8*time.Second, func() string {
			err := c.Get(ctx, "tls:rot:b").Err()
			if err == nil || !strings.Contains(err.Error(), "x509") {
				return "GET on a node whose CA was rotated out: " + errString(err)
			}
			return ""
		}); msg != "" {
			t.Error(msg)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// TestSecurityClientTLS serves clients over TLS (--tls-cert/--tls-key, with
// --password): go-redis, redigo and redis-cli connect with the test CA, a
// plaintext client is refused, and a certificate rewritten on disk is served
// to new connections without a restart (old connections keep working).
func TestSecurityClientTLS(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	ca := testenv.NewCA(t, "client-facing CA")
	cert := ca.ServerCert()
	r := testenv.StartRedis(t)
	j := testenv.StartJupiter(t, nil, "--backends", r.Addr, "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile,
		"--password", secClientPW)
	c := newClientWith(t, &redis.Options{Addr: j.Addr, Password: secClientPW, TLSConfig: ca.ClientTLS("127.0.0.1")})

	t.Run("GoRedis", func(t *testing.T) {
		if err := c.Set(ctx, "ctls:k", "v", 0).Err(); err != nil {
			t.Fatalf("go-redis over TLS: %v", err)
		}
		if v, err := c.Get(ctx, "ctls:k").Result(); err != nil || v != "v" {
			t.Errorf("GET over TLS = %q, %v", v, err)
		}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 200; i++ {
				p.Incr(ctx, "ctls:ctr")
			}
			return nil
		})
		if err != nil || cmds[199].(*redis.IntCmd).Val() != 200 {
			t.Errorf("pipeline over TLS: %v", err)
		}
		other := testenv.NewCA(t, "other CA")
		bad := newClientWith(t, &redis.Options{Addr: j.Addr, Password: secClientPW, TLSConfig: other.ClientTLS("127.0.0.1"), MaxRetries: -1})
		if err := bad.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("client trusting another CA: %v, want a certificate error", err)
		}
	})

	t.Run("Redigo", func(t *testing.T) {
		rc := dialRedigo(t, j.Addr, redigo.DialUseTLS(true), redigo.DialTLSConfig(ca.ClientTLS("127.0.0.1")),
			redigo.DialPassword(secClientPW))
		if v, err := redigo.String(rc.Do("GET", "ctls:k")); err != nil || v != "v" {
			t.Errorf("redigo over TLS GET = %q, %v", v, err)
		}
	})

	t.Run("RedisCli", func(t *testing.T) {
		help, _ := testenv.CliInput(t, j.Addr, "", "--help")
		if !strings.Contains(help, "--tls") {
			t.Skip("redis-cli built without TLS")
		}
		out := testenv.Cli(t, j.Addr, "--tls", "--cacert", ca.File, "-a", secClientPW, "--no-auth-warning", "GET", "ctls:k")
		if out != `"v"` {
			t.Errorf("redis-cli --tls --cacert GET = %q", out)
		}
	})

	t.Run("PlaintextRefused", func(t *testing.T) {
		nc, err := net.DialTimeout("tcp", j.Addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_, _ = nc.Write([]byte(encode("AUTH", secClientPW) + encode("PING")))
		_ = nc.SetReadDeadline(time.Now().Add(3 * time.Second))
		b, err := io.ReadAll(nc)
		if strings.Contains(string(b), "PONG") || strings.Contains(string(b), "+OK") {
			t.Errorf("a plaintext client was served: %q", b)
		}
		var ne net.Error
		if err != nil && errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("plaintext connection left open (read timed out), want it closed")
		}
		p := newClientWith(t, &redis.Options{Addr: j.Addr, Password: secClientPW, MaxRetries: -1, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
		if err := p.Ping(ctx).Err(); err == nil {
			t.Errorf("go-redis without TLS: PING succeeded")
		}
	})

	serial := func(t *testing.T) (string, string) {
		t.Helper()
		tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", j.Addr, ca.ClientTLS("127.0.0.1"))
		if err != nil {
			t.Fatalf("TLS dial: %v", err)
		}
		defer tc.Close()
		pc := tc.ConnectionState().PeerCertificates[0]
		return pc.SerialNumber.String(), pc.Subject.CommonName
	}

	t.Run("CertRotation", func(t *testing.T) {
		if s, _ := serial(t); s != cert.Cert.SerialNumber.String() {
			t.Fatalf("served serial %s, want %s", s, cert.Cert.SerialNumber)
		}
		next := ca.Issue(testenv.CertSpec{CommonName: "jupiter-rotated", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
		next.WriteTo(t, cert.CertFile, cert.KeyFile)
		if msg := secWaitFor(3*time.Second, func() string {
			if s, cn := serial(t); s != next.Cert.SerialNumber.String() || cn != "jupiter-rotated" {
				return "new connections still get serial " + s + " CN " + cn
			}
			return ""
		}); msg != "" {
			t.Fatal(msg)
		}
		// Connections opened before the rotation keep working.
		if err := c.Get(ctx, "ctls:k").Err(); err != nil {
			t.Errorf("old connection after rotation: %v", err)
		}
		fresh := newClientWith(t, &redis.Options{Addr: j.Addr, Password: secClientPW, TLSConfig: ca.ClientTLS("127.0.0.1")})
		if v, err := fresh.Get(ctx, "ctls:k").Result(); err != nil || v != "v" {
			t.Errorf("new client after rotation = %q, %v", v, err)
		}
		// A broken renewal (garbage key) keeps the last good certificate.
		if err := os.WriteFile(cert.KeyFile, []byte("not a key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		if s, _ := serial(t); s != next.Cert.SerialNumber.String() {
			t.Errorf("after a broken key file: serial %s, want the last good %s", s, next.Cert.SerialNumber)
		}
		next.WriteTo(t, cert.CertFile, cert.KeyFile)
	})
}

// TestSecurityTLSMaxClientsAcceptNotBlocked: with client TLS and
// --max-clients, a connection over the limit is refused by writing an error
// on it. On a TLS listener that write runs the TLS handshake, in the accept
// loop, without a deadline: one TCP connection that never sends a
// ClientHello (a port scanner, a stuck client, an attacker) must not stop
// jupiter from accepting every later client.
func TestSecurityTLSMaxClientsAcceptNotBlocked(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t, "CA")
	cert := ca.ServerCert()
	r := testenv.StartRedis(t)
	j := testenv.StartJupiter(t, nil, "--backends", r.Addr, "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile,
		"--max-clients", "1")
	dialTLS := func() (*tls.Conn, error) {
		d := &net.Dialer{Timeout: 2 * time.Second, Deadline: time.Now().Add(3 * time.Second)}
		tc, err := tls.DialWithDialer(d, "tcp", j.Addr, ca.ClientTLS("127.0.0.1"))
		if err == nil {
			_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
		}
		return tc, err
	}
	secWaitConns(t, j.AdminAddr, 0) // StartJupiter's own probe connection is gone
	first, err := dialTLS()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Write([]byte(encode("PING"))); err != nil {
		t.Fatal(err)
	}
	if b := make([]byte, 7); true {
		if _, err := io.ReadFull(first, b); err != nil || string(b) != "+PONG\r\n" {
			t.Fatalf("first client PING = %q, %v", b, err)
		}
	}
	// Over the limit, silent: the accept loop must not wait for it.
	silent, err := net.DialTimeout("tcp", j.Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	time.Sleep(200 * time.Millisecond)
	first.Close()
	// The slot is free again; a new TLS client must be served.
	var last error
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		tc, err := dialTLS()
		if err == nil {
			_, err = tc.Write([]byte(encode("PING")))
			b := make([]byte, 7)
			if err == nil {
				_, err = io.ReadFull(tc, b)
			}
			tc.Close()
			if err == nil && string(b) == "+PONG\r\n" {
				return
			}
			if err == nil {
				err = errorString("reply " + string(b))
			}
		}
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("a silent TCP connection over --max-clients blocks all later TLS clients: last error %v", last)
}

type errorString string

func (e errorString) Error() string { return string(e) }
