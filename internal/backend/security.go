package backend

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/alphauslabs/jupiter/internal/resp"
)

// Security is how jupiter authenticates to its Redis nodes: Memorystore's
// AUTH string and its in-transit encryption (TLS with a per-instance CA).
type Security struct {
	Username string // AUTH username (ACL); empty sends "AUTH <password>"
	Password string // empty: no AUTH
	// Passwords overrides Password per node address: every Memorystore
	// instance has its own AUTH string.
	Passwords map[string]string
	// CAFile enables TLS to the nodes: the PEM bundle of CAs that signed them.
	// It is read again on every dial, so a rotated CA file is picked up
	// without a restart.
	CAFile string
	// ServerName, if set, is checked instead of the dialled host.
	ServerName string
	// Routes maps a node address, as the ring names it, to the address
	// this pod dials instead (a local tunnel, another endpoint of the same
	// node). The ring, the password lookup and the TLS name keep the
	// ring's address.
	Routes map[string]string
}

// Route returns the address to dial for the node the ring names addr.
func (s Security) Route(addr string) string {
	if r, ok := s.Routes[addr]; ok {
		return r
	}
	return addr
}

// TLSConfig returns the client TLS configuration for a node at host, or nil
// when TLS is off. Memorystore's server certificate names the instance by IP,
// often only in the Common Name, which Go's default check ignores; so the
// chain is verified here against the CA file and the name is accepted from
// an IP/DNS SAN or, failing that, the Common Name. Verification is never
// skipped: InsecureSkipVerify only hands it from crypto/tls to
// VerifyConnection below.
func (s Security) TLSConfig(host string) (*tls.Config, error) {
	if s.CAFile == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, fmt.Errorf("backend TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("backend TLS CA: no certificate in %s", s.CAFile)
	}
	name := host
	if s.ServerName != "" {
		name = s.ServerName
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         name,
		InsecureSkipVerify: true, // replaced by VerifyConnection, which verifies fully
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs, pool, name)
		},
	}, nil
}

func verifyPeer(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("backend TLS: no server certificate")
	}
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Errorf("backend TLS: %w", err)
	}
	if err := leaf.VerifyHostname(name); err == nil {
		return nil
	}
	// The Common Name counts only on a certificate without SANs (RFC 6125),
	// which is what Memorystore's are: a SAN naming another host wins.
	noSANs := len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 && len(leaf.URIs) == 0
	if noSANs && leaf.Subject.CommonName != "" && strings.EqualFold(leaf.Subject.CommonName, name) {
		return nil
	}
	return fmt.Errorf("backend TLS: certificate is for %q (SANs %v %v), not %q",
		leaf.Subject.CommonName, leaf.DNSNames, leaf.IPAddresses, name)
}

// Dialer returns a data-path dialer that connects, runs the TLS handshake and
// AUTH within timeout, and hands back a connection ready for commands.
func (s Security) Dialer() func(addr string, timeout time.Duration) (net.Conn, error) {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		deadline := time.Now().Add(timeout)
		nc, err := dialTCP(s.Route(addr), timeout)
		if err != nil {
			return nil, err
		}
		if err := s.handshake(&nc, addr, s.passwordFor(addr), deadline); err != nil {
			nc.Close()
			return nil, err
		}
		return nc, nil
	}
}

func (s Security) passwordFor(addr string) string {
	if pw, ok := s.Passwords[addr]; ok {
		return pw
	}
	return s.Password
}

func (s Security) handshake(nc *net.Conn, addr, password string, deadline time.Time) error {
	if err := (*nc).SetDeadline(deadline); err != nil {
		return err
	}
	if s.CAFile != "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg, err := s.TLSConfig(host)
		if err != nil {
			return err
		}
		tc := tls.Client(*nc, cfg)
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		*nc = tc
	}
	if password == "" {
		// No AUTH to send: PING instead, so a node that wants a password
		// fails the dial with an error naming it, rather than answering
		// every client with a bare NOAUTH while counting as up.
		if _, err := (*nc).Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReaderSize(*nc, 512).ReadString('\n')
		if err != nil {
			return fmt.Errorf("PING: %w", err)
		}
		if !strings.HasPrefix(line, "+PONG") {
			return fmt.Errorf("PING refused (does the node need --backend-password?): %s", strings.TrimSpace(line))
		}
	} else {
		var cmd []byte
		if s.Username != "" {
			cmd = resp.AppendCommand(nil, []byte("AUTH"), []byte(s.Username), []byte(password))
		} else {
			cmd = resp.AppendCommand(nil, []byte("AUTH"), []byte(password))
		}
		if _, err := (*nc).Write(cmd); err != nil {
			return err
		}
		line, err := bufio.NewReaderSize(*nc, 512).ReadString('\n')
		if err != nil {
			return fmt.Errorf("AUTH: %w", err)
		}
		if !strings.HasPrefix(line, "+OK") {
			// Never echo the password; the node's error text names no secret.
			return fmt.Errorf("AUTH refused: %s", strings.TrimSpace(line))
		}
	}
	return (*nc).SetDeadline(time.Time{})
}

// Ping checks that a Redis node answers, with the same AUTH and TLS as the
// data path, over a short-lived go-redis client (the control path).
func (s Security) Ping(ctx context.Context, addr string, timeout time.Duration) error {
	host, _, _ := net.SplitHostPort(addr)
	tlsCfg, err := s.TLSConfig(host)
	if err != nil {
		return err
	}
	return ping(ctx, s.Route(addr), timeout, s.Username, s.passwordFor(addr), tlsCfg)
}
