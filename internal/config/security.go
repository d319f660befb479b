package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// HTTPAdminPassword is what the mutating HTTP admin endpoints require: the
// admin password, or else the client password, so that setting --password
// alone does not leave ring changes open over HTTP.
func (s Security) HTTPAdminPassword() string {
	if s.AdminPassword != "" {
		return s.AdminPassword
	}
	return s.Password
}

// Security holds secrets and TLS settings. Every secret can come from a flag,
// from the JUPITER_<NAME> environment variable, or from a file (the -file
// variant, for Kubernetes Secrets mounted as files); files are read once at
// start and their trailing newline is dropped.
type Security struct {
	Password      string // clients: AUTH <pw> / AUTH default <pw>
	AdminPassword string // admins: AUTH admin <pw>; needed for ring changes when set
	BackendUser   string // AUTH username towards the nodes (ACL); usually empty
	BackendPass   string // Memorystore AUTH string
	// BackendPasses maps a node address to its own AUTH string (one per
	// Memorystore instance), from --backend-password-map.
	BackendPasses map[string]string
	// BackendRoutes maps a node address, as the ring names it, to the
	// address this pod dials instead (--backend-route).
	BackendRoutes  map[string]string
	BackendTLSCA   string // PEM CA file; TLS to the nodes is on when set
	BackendTLSName string // expected server name/IP when it differs from the dialled host
	TLSCert        string // PEM certificate for client TLS (with TLSKey)
	TLSKey         string

	passwordFile, adminPasswordFile, backendPassFile, backendPassMap, backendRoutes string
}

// bindSecurity registers the security flags.
func (c *Config) bindSecurity(fs *flag.FlagSet) {
	s := &c.Security
	fs.StringVar(&s.Password, "password", s.Password, "password clients must AUTH with (empty: no client auth)")
	fs.StringVar(&s.passwordFile, "password-file", "", "file holding --password")
	fs.StringVar(&s.AdminPassword, "admin-password", s.AdminPassword, "password for AUTH admin <pw>, required for JUPITER ADD/REMOVE/WEIGHT and mutating HTTP calls when set")
	fs.StringVar(&s.adminPasswordFile, "admin-password-file", "", "file holding --admin-password")
	fs.StringVar(&s.BackendUser, "backend-username", s.BackendUser, "username for AUTH to the Redis nodes (ACL); empty sends AUTH <password>")
	fs.StringVar(&s.BackendPass, "backend-password", s.BackendPass, "AUTH string of the Redis nodes (Memorystore AUTH)")
	fs.StringVar(&s.backendPassFile, "backend-password-file", "", "file holding --backend-password")
	fs.StringVar(&s.backendPassMap, "backend-password-map", "", "file of 'host:port password' lines: per-node AUTH strings (override --backend-password)")
	fs.StringVar(&s.backendRoutes, "backend-route", "", "per-pod route to nodes: 'ring-addr=dial-addr[,…]' dials dial-addr (a local tunnel, another endpoint of the same node) for the node the ring names ring-addr; AUTH and TLS names keep ring-addr")
	fs.StringVar(&s.BackendTLSCA, "backend-tls-ca", s.BackendTLSCA, "PEM CA bundle of the Redis nodes; enables TLS to them (re-read on every dial)")
	fs.StringVar(&s.BackendTLSName, "backend-tls-server-name", s.BackendTLSName, "name or IP the nodes' certificates must carry, if not the dialled host")
	fs.StringVar(&s.TLSCert, "tls-cert", s.TLSCert, "PEM certificate for TLS to clients (with --tls-key; reloaded when the files change)")
	fs.StringVar(&s.TLSKey, "tls-key", s.TLSKey, "PEM private key for --tls-cert")
}

// resolveSecrets reads the -file variants and parses --backend-route.
func (s *Security) resolveSecrets() error {
	var errs []error
	read := func(flag, file string, dst *string) {
		if file == "" {
			return
		}
		if *dst != "" {
			errs = append(errs, fmt.Errorf("--%s and --%s-file are both set", flag, flag))
			return
		}
		b, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("--%s-file: %w", flag, err))
			return
		}
		*dst = strings.TrimRight(string(b), "\r\n")
		if *dst == "" {
			errs = append(errs, fmt.Errorf("--%s-file: %s is empty", flag, file))
		}
	}
	read("password", s.passwordFile, &s.Password)
	read("admin-password", s.adminPasswordFile, &s.AdminPassword)
	read("backend-password", s.backendPassFile, &s.BackendPass)
	if s.backendPassMap != "" {
		m, err := readPasswordMap(s.backendPassMap)
		if err != nil {
			errs = append(errs, fmt.Errorf("--backend-password-map: %w", err))
		}
		s.BackendPasses = m
	}
	if s.backendRoutes != "" {
		s.BackendRoutes = map[string]string{}
		for _, kv := range strings.Split(s.backendRoutes, ",") {
			from, to, ok := strings.Cut(strings.TrimSpace(kv), "=")
			if !ok || checkHostPort(from) != nil || checkHostPort(to) != nil {
				errs = append(errs, fmt.Errorf("--backend-route: %q: want ring-addr=dial-addr (host:port=host:port)", kv))
				continue
			}
			s.BackendRoutes[from] = to
		}
	}
	return errors.Join(errs...)
}

// readPasswordMap parses "host:port password" lines; blank lines and lines
// starting with # are skipped. Error messages never quote a password.
func readPasswordMap(file string) (map[string]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		addr, pw, ok := strings.Cut(line, " ")
		pw = strings.TrimSpace(pw)
		if !ok || pw == "" {
			return nil, fmt.Errorf("%s line %d: want 'host:port password'", file, i+1)
		}
		if err := checkHostPort(addr); err != nil {
			return nil, fmt.Errorf("%s line %d: %v", file, i+1, err)
		}
		m[addr] = pw
	}
	return m, nil
}

func (s Security) validate(bad func(flag, format string, a ...any)) {
	if (s.TLSCert == "") != (s.TLSKey == "") {
		bad("tls-cert", "--tls-cert and --tls-key go together")
	}
	for flag, f := range map[string]string{"tls-cert": s.TLSCert, "tls-key": s.TLSKey, "backend-tls-ca": s.BackendTLSCA} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			bad(flag, "%v", err)
		}
	}
	if s.BackendUser != "" && s.BackendPass == "" && len(s.BackendPasses) == 0 {
		bad("backend-username", "needs --backend-password")
	}
	if s.AdminPassword != "" && s.AdminPassword == s.Password {
		bad("admin-password", "must differ from --password")
	}
}

// Redacted returns a copy safe to log: secrets replaced by "set".
func (s Security) Redacted() Security {
	r := s
	for _, p := range []*string{&r.Password, &r.AdminPassword, &r.BackendPass} {
		if *p != "" {
			*p = "set"
		}
	}
	if len(s.BackendPasses) > 0 {
		r.BackendPasses = make(map[string]string, len(s.BackendPasses))
		for addr := range s.BackendPasses {
			r.BackendPasses[addr] = "set"
		}
	}
	return r
}
