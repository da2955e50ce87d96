package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// gateway is the HTTP side: the REST routes of every service plus the gateway's own pages.
type gateway struct {
	cfg     config
	conns   []connection
	metrics *metrics
	tracing *tracing // nil: no spans, trace context passed through
	openAPI []byte
	log     *slog.Logger
}

// handler builds the whole HTTP surface:
//
//	/healthz        200 while the gateway serves; ?upstreams=1 adds each service's grpc.health.v1 status
//	/openapi.json   the merged OpenAPI v2 document of every service
//	/docs           a page that renders /openapi.json (self-contained: no CDN, no download at run time)
//	everything else the google.api.http rules of the services, through grpc-gateway
func (g *gateway) handler(ctx context.Context) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithIncomingHeaderMatcher(headerMatcher),
		runtime.WithErrorHandler(errorHandler),
		runtime.WithRoutingErrorHandler(routingErrorHandler),
		runtime.WithMiddlewares(routeMiddleware),
	)
	if err := registerAll(ctx, mux, g.conns); err != nil {
		return nil, err
	}
	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", g.healthz)
	root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(g.openAPI)
	})
	docs := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// The page may run only its own inline script and talk only to this origin.
		w.Header().Set("Content-Security-Policy",
			"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:")
		_, _ = w.Write(docsPage)
	}
	root.HandleFunc("GET /docs", docs)
	root.HandleFunc("GET /docs/", docs)
	root.Handle("/", httpCache(mux, g.cfg.PublicMaxAge))
	return edge(root, g.metrics, g.tracing, g.log, g.cfg.MaxBodyBytes), nil
}

func (g *gateway) healthz(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{"status": "SERVING", "version": version}
	if q := r.URL.Query().Get("upstreams"); q == "1" || q == "true" {
		body["upstreams"] = upstreamHealth(r.Context(), g.conns, time.Second)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(body)
}
