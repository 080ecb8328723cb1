package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// What an operator uses to watch and profile a running rso: logs, /metrics and /debug/pprof/.

// newLogger writes log lines to w at the configured level and format.
func newLogger(c *Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// newRegistry is the registry /metrics serves: the Go runtime and the process, and the services' own
// collectors (they register on it when they start).
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// gatherers is what /metrics serves: the runtime's registry and one per started service. A service that
// fails to start is started again from scratch (startup retries), so each attempt gets a registry of its
// own and only the one that started is kept; the families of all are merged (the same name from /so and
// /relay, with different endpoint labels).
type gatherers struct {
	mu   sync.Mutex
	list prometheus.Gatherers
}

func (g *gatherers) add(r prometheus.Gatherer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.list = append(g.list, r)
}

func (g *gatherers) Gather() ([]*dto.MetricFamily, error) {
	g.mu.Lock()
	list := g.list
	g.mu.Unlock()
	return list.Gather()
}

// gathered keeps a service's registry once it has started (err == nil).
func (m *Main) gathered(reg *prometheus.Registry, err error) error {
	if err == nil {
		m.gather.add(reg)
	}
	return err
}

// registerNATS exports the state of the node's NATS connection.
func (m *Main) registerNATS() {
	nc := m.nc
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "rso_nats_connected", Help: "1 while the node's NATS connection is up, else 0."},
			func() float64 {
				if nc.IsConnected() {
					return 1
				}
				return 0
			}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "rso_nats_reconnects_total", Help: "Reconnects of the node's NATS connection."},
			func() float64 { return float64(nc.Stats().Reconnects) }),
	)
}

// listenOperator opens the metrics and profiling listeners (when configured), early like the main one: a
// busy port is found before anything starts.
func (m *Main) listenOperator() error {
	c := &m.cfg
	open := func(addr, name string, h http.Handler) (*http.Server, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("cannot listen on %s: %s (change %s)", addr, errnoText(err), c.label(name))
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: readHeaderWait, ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("operator listener stopped", "addr", addr, "err", err)
			}
		}()
		return srv, nil
	}
	var err error
	if c.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.requireAdmin(promhttp.HandlerFor(&m.gather, promhttp.HandlerOpts{
			ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn), MaxRequestsInFlight: 4,
		})))
		m.metricsMux = mux // the admin API joins it once NATS is up (adminRoutes)
		if m.metricsHTTP, err = open(c.MetricsAddr, "metrics-addr", mux); err != nil {
			return err
		}
	}
	if c.DebugAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		// No /debug/pprof/cmdline: it would show secrets given as flags.
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		if m.debugHTTP, err = open(c.DebugAddr, "debug-addr", mux); err != nil {
			return err
		}
	}
	return nil
}

// requireAdmin lets a request through only with "Authorization: Bearer <admin token>" when there is one.
func (m *Main) requireAdmin(h http.Handler) http.Handler {
	token := m.cfg.AdminToken
	if len(token) == 0 {
		return h // only on loopback (or -insecure): Config.check
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(got), token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rso admin"`)
			http.Error(w, `this needs the admin token: send "Authorization: Bearer <-admin-token>"`, http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func offIfEmpty(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}

// closeOperator stops the metrics and profiling listeners.
func (m *Main) closeOperator(ctx context.Context) {
	for _, srv := range []*http.Server{m.metricsHTTP, m.debugHTTP} {
		if srv != nil {
			if srv.Shutdown(ctx) != nil {
				srv.Close()
			}
		}
	}
}
