package testenv

// Test PKI for the TLS end-to-end tests, built with crypto/x509 (no openssl):
// a CA, server certificates the way redis-server and jupiter use them (IP SAN
// 127.0.0.1, or a Common Name only and no SAN at all, like Memorystore's
// in-transit encryption certificates), PEM files in t.TempDir(), and a
// redis-server that serves TLS only.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// CA is a self-signed test certificate authority.
type CA struct {
	Name string
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	PEM  []byte // the CA certificate, PEM
	File string // PEM file of the CA certificate (what --backend-tls-ca and --cacert take)
	tb   testing.TB
}

// Cert is a certificate issued by a CA, with its PEM files.
type Cert struct {
	Cert     *x509.Certificate
	CertPEM  []byte
	KeyPEM   []byte
	CertFile string
	KeyFile  string
	CA       *CA
}

// CertSpec says what a certificate names. No IPs and no DNS names means no
// subjectAltName extension at all (a Common Name only certificate).
type CertSpec struct {
	CommonName string
	IPs        []net.IP
	DNSNames   []string
}

// NewCA creates a CA named name and writes its certificate to a file.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(tb),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"jupiter tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	ca := &CA{Name: name, Cert: cert, Key: key, tb: tb,
		PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	ca.File = filepath.Join(tb.TempDir(), "ca.pem")
	WriteFileAtomic(tb, ca.File, ca.PEM)
	return ca
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ClientTLS returns a client configuration that trusts only this CA and
// expects serverName (an IP or DNS name) in the server's certificate.
func (ca *CA) ClientTLS(serverName string) *tls.Config {
	return &tls.Config{RootCAs: ca.Pool(), ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// Issue signs a server certificate (usable for client auth too) for spec and
// writes cert.pem and key.pem to a fresh temporary directory.
func (ca *CA) Issue(spec CertSpec) *Cert {
	tb := ca.tb
	tb.Helper()
	key := newKey(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: newSerial(tb),
		Subject:      pkix.Name{CommonName: spec.CommonName, Organization: []string{"jupiter tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  spec.IPs,
		DNSNames:     spec.DNSNames,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	c := &Cert{Cert: cert, CA: ca,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})}
	dir := tb.TempDir()
	c.CertFile, c.KeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	c.WriteTo(tb, c.CertFile, c.KeyFile)
	return c
}

// ServerCert issues the usual loopback server certificate: CN 127.0.0.1 with
// the IP SAN 127.0.0.1 and the DNS SAN localhost.
func (ca *CA) ServerCert() *Cert {
	ca.tb.Helper()
	return ca.Issue(CertSpec{CommonName: "127.0.0.1", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}})
}

// CNOnlyCert issues a certificate that names 127.0.0.1 in its Common Name
// only, with no subjectAltName extension, the way Memorystore's server
// certificates name the instance. Go's default verification rejects it.
func (ca *CA) CNOnlyCert() *Cert {
	ca.tb.Helper()
	return ca.Issue(CertSpec{CommonName: "127.0.0.1"})
}

// WriteTo writes the certificate and key to the given paths (overwriting:
// how a rotated Secret or renewed certificate reaches a running process).
// The key is written first, then the certificate.
func (c *Cert) WriteTo(tb testing.TB, certFile, keyFile string) {
	tb.Helper()
	WriteFileAtomic(tb, keyFile, c.KeyPEM)
	WriteFileAtomic(tb, certFile, c.CertPEM)
}

// WriteFileAtomic replaces path with data through a rename, so a reader
// never sees a half-written file.
func WriteFileAtomic(tb testing.TB, path string, data []byte) {
	tb.Helper()
	tmp := path + ".tmp" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
}

func newKey(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newSerial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		tb.Fatal(err)
	}
	return n.Add(n, big.NewInt(1))
}

// StartRedisTLS starts a redis-server that serves TLS only (--port 0) on a
// free loopback port with cert, and does not ask clients for certificates
// (--tls-auth-clients no, like Memorystore). Extra args are passed through
// (e.g. "--requirepass", "x"). Restart reuses the same files, so a test can
// overwrite them (Cert.WriteTo) and Restart to rotate the server's
// certificate. The server is stopped when the test ends.
func StartRedisTLS(tb testing.TB, cert *Cert, extra ...string) *Redis {
	tb.Helper()
	bin := Need(tb, "redis-server")
	r := &Redis{tb: tb, Dir: tb.TempDir()}
	r.Port = FreePort(tb)
	r.Addr = "127.0.0.1:" + strconv.Itoa(r.Port)
	r.args = append([]string{"--port", "0", "--tls-port", strconv.Itoa(r.Port), "--bind", "127.0.0.1",
		"--tls-cert-file", cert.CertFile, "--tls-key-file", cert.KeyFile, "--tls-ca-cert-file", cert.CA.File,
		"--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", r.Dir, "--protected-mode", "no"}, extra...)
	r.start(bin)
	tb.Cleanup(r.Stop)
	return r
}
