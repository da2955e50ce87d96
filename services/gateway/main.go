// Command gateway is Cinema's REST/JSON bridge: grpc-gateway handlers generated from protos/
// (services/gateway/generate) in front of the gRPC services, with the merged OpenAPI document,
// an API page, health, Prometheus metrics, JSON logs and a graceful stop.
//
// Configuration is read from GATEWAY_* environment variables (see config.go and README.md).
// On SIGTERM or SIGINT it stops accepting connections, lets the requests in flight finish for
// up to GATEWAY_SHUTDOWN_TIMEOUT_S, closes its upstream connections and exits 0.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
)

// version is the digest of the gateway's sources, set by scripts/bootstrap (-ldflags -X).
var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-version" || os.Args[1] == "--version") {
		fmt.Println(version)
		return
	}
	os.Exit(run())
}

func run() int {
	cfg, err := loadConfigFromEnv()
	if err != nil {
		newLogger(slog.LevelInfo).Error("gateway cannot start", "error", err.Error())
		return 2
	}
	log := newLogger(cfg.LogLevel)
	slog.SetDefault(log)
	routeGRPCLogs(log)

	// The deadline of an upstream call when the client sends no grpc-timeout header.
	runtime.DefaultContextTimeout = cfg.CallTimeout

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	m := newMetrics()
	interceptors := []grpc.UnaryClientInterceptor{m.clientInterceptor}
	var tr *tracing
	if cfg.OTLPEndpoint != "" {
		if tr, err = newTracing(ctx, cfg.OTLPEndpoint, log); err != nil {
			log.Error("gateway cannot start", "error", err.Error())
			return 1
		}
		// Flushed after the servers drained, so the last requests' spans are exported too.
		defer tr.shutdown(5 * time.Second)
		// The client span first: the metrics interceptor then times the call inside it.
		interceptors = []grpc.UnaryClientInterceptor{tr.clientInterceptor, m.clientInterceptor}
	}
	conns, err := dial(cfg, interceptors...)
	if err != nil {
		log.Error("gateway cannot start", "error", err.Error())
		return 1
	}
	defer closeAll(conns)
	doc, err := openAPIDocument()
	if err != nil {
		log.Error("gateway cannot start", "error", err.Error())
		return 1
	}
	g := &gateway{cfg: cfg, conns: conns, metrics: m, tracing: tr, openAPI: doc, log: log}
	// Handlers live as long as the process; their context is not the signal's, so a stopping
	// gateway still finishes the calls in flight.
	handler, err := g.handler(context.Background())
	if err != nil {
		log.Error("gateway cannot start", "error", err.Error())
		return 1
	}

	servers := []*http.Server{{
		Addr:              cfg.HTTPAddr,
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	if cfg.MetricsEnabled {
		metricsMux := http.NewServeMux()
		metricsMux.Handle("GET /metrics", m.handler())
		servers = append(servers, &http.Server{
			Addr: cfg.MetricsAddr, Handler: metricsMux, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		})
	}
	// Bind every listener before serving anything: a port in use is a start-up failure.
	listeners := make([]net.Listener, 0, len(servers))
	for _, s := range servers {
		l, err := net.Listen("tcp", s.Addr)
		if err != nil {
			log.Error("gateway cannot listen", "address", s.Addr, "error", err.Error())
			for _, l := range listeners {
				_ = l.Close()
			}
			return 1
		}
		listeners = append(listeners, l)
	}

	failed := make(chan error, len(servers))
	for i, s := range servers {
		go func() {
			if err := s.Serve(listeners[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				failed <- err
			}
		}()
	}
	attrs := []any{"http", "http://" + listeners[0].Addr().String(), "version", version,
		"call_timeout_s", cfg.CallTimeout.Seconds()}
	if tr != nil {
		attrs = append(attrs, "otlp_endpoint", cfg.OTLPEndpoint)
	}
	if cfg.MetricsEnabled {
		attrs = append(attrs, "metrics", "http://"+listeners[1].Addr().String()+"/metrics")
	}
	for _, c := range conns {
		attrs = append(attrs, c.name, c.address)
	}
	log.Info("gateway serving", attrs...)

	code := 0
	select {
	case <-ctx.Done():
		log.Info("gateway stopping", "drain_timeout_s", cfg.ShutdownTimeout.Seconds())
	case err := <-failed:
		log.Error("gateway server failed", "error", err.Error())
		code = 1
	}
	stop() // a second signal now kills the process the default way

	drainCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Go(func() {
			// Shutdown closes the listeners at once, then waits for the requests in flight.
			if err := s.Shutdown(drainCtx); err != nil {
				log.Warn("requests still in flight at the drain deadline: closing them", "address", s.Addr, "error", err.Error())
				_ = s.Close()
			}
		})
	}
	wg.Wait()
	log.Info("gateway stopped")
	return code
}
