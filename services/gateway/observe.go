package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// requestInfo is what the access log and the metrics learn about one HTTP request while it is
// served: the route it matched (filled in by a grpc-gateway middleware, which sees the pattern),
// and the upstream RPC and its gRPC code (filled in by the client interceptor).
type requestInfo struct {
	route         string
	rpc           string
	grpcCode      string
	upstreamError string // the message of a failed upstream call, as the service (or gRPC) gave it
}

type infoKey struct{}

func infoFrom(ctx context.Context) *requestInfo {
	info, _ := ctx.Value(infoKey{}).(*requestInfo)
	return info
}

// metrics of the gateway, on its own registry (served at GATEWAY_METRICS_PORT /metrics).
type metrics struct {
	registry        *prometheus.Registry
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	upstreamCalls   *prometheus.CounterVec
	upstreamLatency *prometheus.HistogramVec
}

func newMetrics() *metrics {
	m := &metrics{
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_http_requests_total", Help: "HTTP requests served, by method, route template and status.",
		}, []string{"method", "route", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gateway_http_request_duration_seconds", Help: "Time to serve an HTTP request, by method and route template.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gateway_http_requests_in_flight", Help: "HTTP requests being served right now.",
		}),
		upstreamCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gateway_upstream_calls_total", Help: "gRPC calls to the services, by full method and gRPC code.",
		}, []string{"rpc", "code"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gateway_upstream_call_duration_seconds", Help: "Duration of gRPC calls to the services, by full method.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"rpc"}),
	}
	m.registry.MustRegister(m.requests, m.duration, m.inFlight, m.upstreamCalls, m.upstreamLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{Registry: m.registry})
}

// clientInterceptor times every upstream call and records its method and code for the log.
func (m *metrics) clientInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	if strings.HasPrefix(method, "/grpc.health.v1.") {
		return err // /healthz?upstreams=1 checks every service at once: not REST traffic
	}
	code := codeName(status.Code(err))
	if info := infoFrom(ctx); info != nil {
		info.rpc, info.grpcCode = method, code
		if err != nil {
			info.upstreamError = status.Convert(err).Message()
		}
	}
	m.upstreamCalls.WithLabelValues(method, code).Inc()
	m.upstreamLatency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	return err
}

// codeName is the canonical name of a gRPC code (UNAVAILABLE, NOT_FOUND, …), as the Python
// services and the google.rpc.Code enum spell it.
func codeName(c codes.Code) string { return rpccode.Code(c).String() }

// routeMiddleware runs inside grpc-gateway's mux, after routing: it records the matched
// google.api.http template (e.g. /v1/movies/{movie_id}), a bounded label unlike the raw path.
func routeMiddleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if pattern, ok := runtime.HTTPPattern(r.Context()); ok {
			if info := infoFrom(r.Context()); info != nil {
				info.route = strings.ReplaceAll(pattern.String(), "=*}", "}")
			}
		}
		next(w, r, params)
	}
}

// recorder captures the status and size of a response for the log and the metrics.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rec *recorder) WriteHeader(code int) {
	if rec.status == 0 {
		rec.status = code
	}
	rec.ResponseWriter.WriteHeader(code)
}

func (rec *recorder) Write(b []byte) (int, error) {
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	n, err := rec.ResponseWriter.Write(b)
	rec.bytes += int64(n)
	return n, err
}

func (rec *recorder) Flush() {
	if f, ok := rec.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (rec *recorder) Unwrap() http.ResponseWriter { return rec.ResponseWriter }

// edge wraps the whole HTTP surface: trace context and request id, body limit, panic recovery,
// the JSON access log line and the HTTP metrics of every request.
func edge(next http.Handler, m *metrics, tr *tracing, log *slog.Logger, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var traceID, requestID string
		var span trace.Span
		if tr != nil && staticRoute(r.URL.Path) == "unmatched" { // the gateway's own pages make no spans
			requestID = ensureRequestID(r)
			r, span = tr.startServer(r, requestID)
			traceID = span.SpanContext().TraceID().String()
		} else {
			traceID, requestID = ensureTraceContext(r)
		}
		w.Header().Set("X-Request-Id", requestID)
		info := &requestInfo{}
		r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		}
		rec := &recorder{ResponseWriter: w}
		m.inFlight.Inc()
		defer func() {
			m.inFlight.Dec()
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler { // net/http aborts a response this way: let it
					panic(p)
				}
				log.Error("panic while serving a request", "panic", fmt.Sprint(p), "path", r.URL.Path, "trace_id", traceID)
				if rec.status == 0 {
					rec.Header().Set("Content-Type", "application/json")
					rec.WriteHeader(http.StatusInternalServerError)
					_, _ = rec.Write([]byte(`{"code":13,"message":"internal error","details":[]}`))
				}
			}
			if rec.status == 0 {
				rec.status = http.StatusOK
			}
			route := info.route
			if route == "" {
				route = staticRoute(r.URL.Path)
			}
			elapsed := time.Since(start)
			if span != nil {
				endServer(span, r.Method, route, rec.status, info)
			}
			m.requests.WithLabelValues(r.Method, route, strconv.Itoa(rec.status)).Inc()
			m.duration.WithLabelValues(r.Method, route).Observe(elapsed.Seconds())
			level := slog.LevelInfo
			if rec.status >= 500 {
				level = slog.LevelWarn
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.String("route", route),
				slog.Int("status", rec.status),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.Int64("bytes", rec.bytes),
				slog.String("trace_id", traceID),
				slog.String("request_id", requestID),
				slog.String("remote", r.RemoteAddr),
			}
			if info.rpc != "" {
				attrs = append(attrs, slog.String("rpc", info.rpc))
			}
			if info.grpcCode != "" {
				attrs = append(attrs, slog.String("grpc_code", info.grpcCode))
			}
			if info.upstreamError != "" {
				attrs = append(attrs, slog.String("error", info.upstreamError))
			}
			log.LogAttrs(r.Context(), level, "request", attrs...)
		}()
		next.ServeHTTP(rec, r)
	})
}

// staticRoute names the routes outside grpc-gateway's mux for the metrics; anything else that
// did not match a REST rule counts as "unmatched" (never the raw path: unbounded labels).
func staticRoute(path string) string {
	switch path {
	case "/healthz", "/openapi.json", "/docs", "/docs/":
		return path
	}
	return "unmatched"
}
