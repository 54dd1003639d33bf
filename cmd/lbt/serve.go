package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// serveHTTP serves handler on addr until ctx ends. It listens before it
// returns, so that a taken or forbidden address is an error at start.
func serveHTTP(ctx context.Context, log hclog.Logger, what, addr string, handler http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		key := what + "Addr"
		if errors.Is(err, syscall.EADDRINUSE) {
			return usageError{fmt.Errorf("%s %s is taken (another lbt backup on this host?): set %s to a free host:port, or to \"\" to turn it off", key, addr, key)}
		}
		return usageError{fmt.Errorf("%s %s: %w (set %s to another host:port)", key, addr, err, key)}
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "what", what, "error", err)
		}
	}()
	log.Info("serving", "what", what, "addr", ln.Addr().String())
	return nil
}

// metricsHandler serves the registry's metrics and the Go runtime's at
// /metrics, and at /healthz 200 while healthy returns nil, else 503 with
// the reason.
func metricsHandler(reg *prometheus.Registry, healthy func() error) http.Handler {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := healthy(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok: streaming")
	})
	return mux
}

// startWatchdog pings systemd's watchdog (WatchdogSec= in the unit) twice
// per interval while healthy returns nil, and never otherwise: a daemon
// that stopped making progress is then restarted. Without a watchdog it
// does nothing.
func startWatchdog(ctx context.Context, log hclog.Logger, healthy func() error) error {
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return usageError{fmt.Errorf("systemd watchdog: %w", err)}
	}
	if interval <= 0 {
		return nil
	}
	log.Info("systemd watchdog enabled", "interval", interval)
	go func() {
		tick := time.NewTicker(interval / 2)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if healthy() == nil {
					daemon.SdNotify(false, daemon.SdNotifyWatchdog)
				}
			}
		}
	}()
	return nil
}

// debugHandler serves Go's profiles. It is only started when debugAddr is
// set, and that address should stay on loopback.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
