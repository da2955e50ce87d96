package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// tracing makes the gateway a hop of the trace: a SERVER span per REST request (continuing the
// caller's W3C traceparent, e.g. Envoy's ingress span) and a CLIENT span per upstream gRPC call,
// whose context goes to the service in the `traceparent` metadata, so the service's server span
// is its child. Spans are exported over OTLP/HTTP to GATEWAY_OTLP_ENDPOINT.
//
// Without an endpoint there is no tracing at all (a nil *tracing): the gateway passes the
// caller's trace context through unchanged (tracecontext.go). Unlike the Python services, it makes
// no unexported spans then: a span that nobody sees would still become the parent of the service's
// span, leaving a hole between the caller's span and the service's in the exported trace.
type tracing struct {
	provider   *sdktrace.TracerProvider
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
}

// untracedPrefixes are upstream calls that are not traffic: /healthz?upstreams=1 checks every
// service at once (the Python services do not trace health either).
var untracedPrefixes = []string{"/grpc.health.v1.", "/grpc.reflection."}

// newTracing starts the OTLP/HTTP exporter (lazily: an unreachable collector never stops the
// gateway; spans it cannot take are dropped and the failure logged). endpoint is
// `http://host:port`; `/v1/traces` is appended unless it is already there.
func newTracing(ctx context.Context, endpoint string, log *slog.Logger) (*tracing, error) {
	// The SDK reports export failures through these hooks: route them to the JSON log instead of
	// the standard library's plain-text logger.
	otelLog := log.With("logger", "otel")
	otel.SetLogger(logr.FromSlogHandler(otelLog.Handler()))
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		otelLog.Warn("trace export failed", "error", err.Error())
	}))

	url := strings.TrimRight(endpoint, "/")
	if !strings.HasSuffix(url, "/v1/traces") {
		url += "/v1/traces"
	}
	exporter, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(url), otlptracehttp.WithTimeout(5*time.Second))
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(
		attribute.String("service.name", "gateway"),
		attribute.String("service.version", version),
	))
	if err != nil {
		return nil, err
	}
	provider := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(res),
		// A caller that decided not to sample keeps its decision (flags 00 travel on unchanged).
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	return &tracing{
		provider:   provider,
		tracer:     provider.Tracer("cinema.local/gateway"),
		propagator: propagation.TraceContext{},
	}, nil
}

// shutdown exports the spans still buffered (called once the servers have drained).
func (t *tracing) shutdown(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = t.provider.Shutdown(ctx)
}

// startServer opens the request's SERVER span as a child of the caller's traceparent (a root when
// there is none, or a malformed one, which W3C says to discard together with its tracestate).
// The raw headers are then removed: the client span injects its own context into the upstream
// call's metadata, and grpc-gateway must not forward the caller's next to it.
func (t *tracing) startServer(r *http.Request, requestID string) (*http.Request, trace.Span) {
	if validTraceID(strings.TrimSpace(r.Header.Get("Traceparent"))) == "" {
		r.Header.Del("Traceparent")
		r.Header.Del("Tracestate")
	}
	ctx := t.propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	r.Header.Del("Traceparent")
	r.Header.Del("Tracestate")
	ctx, span := t.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
		attribute.String("cinema.request_id", requestID),
	))
	return r.WithContext(ctx), span
}

// endServer names the span after the matched route (`POST /v1/reservations`, a bounded name
// unlike the raw path) and records the outcome; 5xx is an error of the server span.
func endServer(span trace.Span, method, route string, httpStatus int, info *requestInfo) {
	span.SetName(method + " " + route)
	span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", httpStatus))
	if info.rpc != "" {
		span.SetAttributes(attribute.String("cinema.rpc", info.rpc), attribute.String("cinema.grpc_code", info.grpcCode))
	}
	if httpStatus >= 500 {
		span.SetStatus(otelcodes.Error, http.StatusText(httpStatus))
	}
	span.End()
}

// clientInterceptor opens a CLIENT span per upstream call (named like the Python services' spans,
// `/cinema.reservation.v1.ReservationService/CreateReservation`) and sends its context as the
// call's `traceparent` (and `tracestate`) metadata.
func (t *tracing) clientInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	for _, prefix := range untracedPrefixes {
		if strings.HasPrefix(method, prefix) {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
	}
	service, rpc, _ := strings.Cut(strings.TrimPrefix(method, "/"), "/")
	ctx, span := t.tracer.Start(ctx, method, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("rpc.system", "grpc"),
		attribute.String("rpc.service", service),
		attribute.String("rpc.method", rpc),
		attribute.String("server.address", strings.TrimPrefix(cc.Target(), "dns:///")),
	))
	defer span.End()
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	t.propagator.Inject(ctx, metadataCarrier(md))
	err := invoker(metadata.NewOutgoingContext(ctx, md), method, req, reply, cc, opts...)
	code := status.Code(err)
	span.SetAttributes(attribute.Int("rpc.grpc.status_code", int(code)))
	if err != nil {
		span.SetStatus(otelcodes.Error, codeName(code))
	}
	return err
}

// metadataCarrier lets the propagator write into outgoing gRPC metadata (keys are lower-case).
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
