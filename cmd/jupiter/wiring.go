package main

import (
	"net"

	"crypto/tls"

	"github.com/alphauslabs/jupiter/internal/admin"
	"github.com/alphauslabs/jupiter/internal/backend"
	"github.com/alphauslabs/jupiter/internal/config"
	"github.com/alphauslabs/jupiter/internal/proxy"
	"github.com/alphauslabs/jupiter/internal/resp"
)

// The pieces both modes build the same way from the Config.

func backendSecurity(cfg config.Config) backend.Security {
	s := cfg.Security
	return backend.Security{Username: s.BackendUser, Password: s.BackendPass, Passwords: s.BackendPasses,
		CAFile: s.BackendTLSCA, ServerName: s.BackendTLSName}
}

func poolOptions(cfg config.Config) backend.Options {
	return backend.Options{
		ConnsPerNode:   cfg.BackendConns,
		DialTimeout:    cfg.DialTimeout,
		RequestTimeout: cfg.RequestTimeout,
		Dialer:         backendSecurity(cfg).Dialer(),
	}
}

func pinger(cfg config.Config) backend.Pinger {
	return backend.Pinger{Security: backendSecurity(cfg), Timeout: cfg.DialTimeout}
}

func proxyOptions(cfg config.Config) proxy.Options {
	lim := resp.DefaultLimits
	lim.MaxBulk = cfg.MaxArgBytes
	lim.MaxArgs = cfg.MaxArgs
	return proxy.Options{
		Limits:        lim,
		HashPrefix:    cfg.HashPrefix,
		MaxClients:    cfg.MaxClients,
		IdleTimeout:   cfg.IdleTimeout,
		MaxPipeline:   cfg.MaxPipeline,
		Version:       version,
		Password:      cfg.Security.Password,
		AdminPassword: cfg.Security.AdminPassword,
	}
}

func adminHandler(cfg config.Config, ctl admin.Controller) admin.Handler {
	return admin.Handler{C: ctl, RequireAdmin: cfg.Security.AdminPassword != ""}
}

// listen opens the RESP listener, with TLS when --tls-cert is set.
func listen(cfg config.Config) (net.Listener, error) {
	var tcfg *tls.Config
	if cfg.Security.TLSCert != "" {
		var err error
		if tcfg, err = proxy.ServerTLS(cfg.Security.TLSCert, cfg.Security.TLSKey); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil || tcfg == nil {
		return ln, err
	}
	return tls.NewListener(ln, tcfg), nil
}
