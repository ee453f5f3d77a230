package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/psync-proxy/psync-proxy/proxy/metrics"
)

// ServeMetrics serves Prometheus metrics on ln (/metrics), and the health checks /healthz
// and /readyz, until Shutdown or Close; it returns ErrServerClosed then. It does not start
// the master link: Serve does.
func (s *Server) ServeMetrics(ln net.Listener) error {
	hs := &http.Server{Handler: s.metricsHandler(), ReadHeaderTimeout: 10 * time.Second}
	s.startMu.Lock()
	if s.closing.Load() {
		s.startMu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.httpServers = append(s.httpServers, hs)
	s.startMu.Unlock()
	s.log.Infof("Serving metrics on http://%s/metrics", ln.Addr())
	err := hs.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) || s.closing.Load() {
		return ErrServerClosed
	}
	return fmt.Errorf("proxy: serve metrics on %s: %w", ln.Addr(), err)
}

// metricsHandler is the handler of every metrics listener, made once.
func (s *Server) metricsHandler() http.Handler {
	s.metricsOnce.Do(func() {
		c := metrics.New(metrics.Sources{History: s.history, Link: s.link, Refresher: s.refresher, Sessions: s.sessions,
			Port: s.port, Version: Version, RunID: s.runID, Started: s.created})
		s.metrics = metrics.Handler(c, s.log.Warnf)
	})
	return s.metrics
}

// closeMetrics closes the metrics listeners and their connections.
func (s *Server) closeMetrics() {
	s.startMu.Lock()
	servers := s.httpServers
	s.startMu.Unlock()
	for _, hs := range servers {
		hs.Close()
	}
}
