package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/api/v1alpha1"
	"github.com/kiln-dev/kiln/bootstrap/enroll"
	"github.com/kiln-dev/kiln/bootstrap/secrets"
	"github.com/kiln-dev/kiln/provisioner"
	"github.com/kiln-dev/kiln/state"
)

// configServer serves the configs of a cluster's machines, each once (bootstrap/enroll), while apply
// runs, for a provider whose machines fetch theirs (provisioner.ConfigServing): a machine is created
// with a stub, and its real config waits in its ticket in the state store. The server starts with
// the first stub, when the cluster's CA exists, and listens where the provider says.
type configServer struct {
	g   *globals
	c   *v1alpha1.Cluster
	p   provisioner.ConfigServing
	log *slog.Logger

	mu  sync.Mutex
	srv *enroll.Server
	at  provisioner.ConfigServer
}

// stub issues machine's ticket for its config cfg and returns the stub it is created with.
func (s *configServer) stub(ctx context.Context, machine string, cfg []byte, b *secrets.Bundle) ([]byte, error) {
	at, err := s.start(ctx, b)
	if err != nil {
		return nil, err
	}
	var (
		token  string
		ticket enroll.Ticket
	)
	err = openingStore{g: s.g, mu: &s.g.state}.do(func(st *state.Store) (err error) {
		token, ticket, err = enroll.Issue(st, enroll.Issuing{Cluster: s.c.Metadata.Name, Machine: machine, Config: cfg,
			TTL: s.c.Spec.Security.EnrollmentTTL.Duration, Now: s.g.clock()})
		return err
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("enrollment ticket issued", "machine", machine, "expires", ticket.Expires)
	return enroll.Stub{
		CA: b.ClusterCA.CertPEM, Machine: machine, URL: at.URL + enroll.ConfigPath(s.c.Metadata.Name, machine),
		Token: token, ConfigHash: ticket.ConfigHash,
	}.Render()
}

// resume starts the server when machines created earlier (by an apply that stopped, or ran out of
// --timeout, before they booted) still hold tickets that can be spent: without it they would find
// nobody to fetch their configs from.
func (s *configServer) resume(ctx context.Context) error {
	var (
		b       *secrets.Bundle
		pending []string
	)
	now := s.g.clock()
	err := openingStore{g: s.g, mu: &s.g.state}.do(func(st *state.Store) error {
		ts, err := enroll.List(st, s.c.Metadata.Name)
		if err != nil {
			return err
		}
		for _, t := range ts {
			if t.Spent == nil && now.Before(t.Expires) {
				pending = append(pending, t.Machine)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		b, err = secrets.Load(st, s.c.Metadata.Name)
		return err
	})
	if err != nil || len(pending) == 0 {
		return err
	}
	s.log.Info("machines still to fetch their configs", "machines", strings.Join(pending, ","))
	_, err = s.start(ctx, b)
	return err
}

// start starts the server unless it runs, and says where the machines reach it.
func (s *configServer) start(ctx context.Context, b *secrets.Bundle) (provisioner.ConfigServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return s.at, nil
	}
	at, err := s.p.ConfigServer(ctx, s.c.Metadata.Name)
	if err != nil {
		return provisioner.ConfigServer{}, fmt.Errorf("config server of %s: %w", s.c.Metadata.Name, err)
	}
	srv, err := enroll.Listen(enroll.ServerConfig{Listen: at.Listen, CA: &b.ClusterCA, Names: at.Names, Spend: s.spend, Log: s.log, Now: s.g.clock})
	if err != nil {
		return provisioner.ConfigServer{}, fmt.Errorf("config server of %s: %w", s.c.Metadata.Name, err)
	}
	go func() {
		if err := srv.Serve(); err != nil {
			s.log.Error("config server stopped", "err", err)
		}
	}()
	s.srv, s.at = srv, at
	s.log.Info("serving the machines' configs, each once", "listen", at.Listen, "machines reach it at", at.URL)
	return at, nil
}

func (s *configServer) spend(cluster, machine, token string, from netip.Addr, now time.Time) (cfg []byte, err error) {
	err = openingStore{g: s.g, mu: &s.g.state}.do(func(st *state.Store) error {
		cfg, err = enroll.Spend(st, cluster, machine, token, from, now)
		return err
	})
	return cfg, err
}

// revoke deletes a deleted machine's ticket.
func (s *configServer) revoke(machine string) error {
	return openingStore{g: s.g, mu: &s.g.state}.do(func(st *state.Store) error {
		return enroll.Revoke(st, s.c.Metadata.Name, machine)
	})
}

// close stops the server, if it runs.
func (s *configServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Close()
		s.srv = nil
	}
}
