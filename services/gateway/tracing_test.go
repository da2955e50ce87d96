package main

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

func recordingTracing() (*tracing, *tracetest.SpanRecorder) {
	recorder := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	return &tracing{provider: provider, tracer: provider.Tracer("test"), propagator: propagation.TraceContext{}}, recorder
}

func TestOTLPEndpointConfig(t *testing.T) {
	cfg, err := loadConfig(lookup(map[string]string{"GATEWAY_OTLP_ENDPOINT": "http://127.0.0.1:14318"}))
	if err != nil || cfg.OTLPEndpoint != "http://127.0.0.1:14318" {
		t.Fatalf("endpoint not read: %q %v", cfg.OTLPEndpoint, err)
	}
	if cfg, _ := loadConfig(lookup(nil)); cfg.OTLPEndpoint != "" {
		t.Fatalf("tracing must be off by default: %q", cfg.OTLPEndpoint)
	}
	for _, bad := range []string{"127.0.0.1:14318", "grpc://127.0.0.1:14317", "http://"} {
		if _, err := loadConfig(lookup(map[string]string{"GATEWAY_OTLP_ENDPOINT": bad})); err == nil ||
			!strings.Contains(err.Error(), "GATEWAY_OTLP_ENDPOINT") {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

// The REST request's server span continues the caller's trace; the upstream call's client span is
// its child and is what the service sees as its parent in the traceparent metadata.
func TestServerAndClientSpansJoinTheCallersTrace(t *testing.T) {
	tr, recorder := recordingTracing()
	const traceID, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	r := httptest.NewRequest("POST", "/v1/reservations", nil)
	r.Header.Set("Traceparent", "00-"+traceID+"-"+callerSpan+"-01")
	r.Header.Set("Tracestate", "cinema=t1")
	r, server := tr.startServer(r, "req-1")
	if r.Header.Get("Traceparent") != "" || r.Header.Get("Tracestate") != "" {
		t.Fatal("the caller's raw trace headers would be forwarded next to the client span's")
	}
	// What grpc-gateway puts in the outgoing context: forwarded headers as metadata.
	ctx := metadata.NewOutgoingContext(r.Context(), metadata.Pairs("x-request-id", "req-1"))
	var sent metadata.MD
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		sent, _ = metadata.FromOutgoingContext(ctx)
		return nil
	}
	cc, err := grpc.NewClient("dns:///127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cc.Close() }()
	const method = "/cinema.reservation.v1.ReservationService/CreateReservation"
	if err := tr.clientInterceptor(ctx, method, nil, nil, cc, invoker); err != nil {
		t.Fatal(err)
	}
	endServer(server, "POST", "/v1/reservations", 200, &requestInfo{})

	spans := recorder.Ended()
	if len(spans) != 2 {
		t.Fatalf("want a client and a server span, got %d", len(spans))
	}
	client, srv := spans[0], spans[1]
	if srv.Name() != "POST /v1/reservations" || srv.SpanKind() != trace.SpanKindServer ||
		srv.Parent().SpanID().String() != callerSpan || srv.SpanContext().TraceID().String() != traceID {
		t.Errorf("server span: %s %v parent %s", srv.Name(), srv.SpanKind(), srv.Parent().SpanID())
	}
	if client.Name() != method || client.SpanKind() != trace.SpanKindClient || client.Parent().SpanID() != srv.SpanContext().SpanID() {
		t.Errorf("client span: %s %v parent %s", client.Name(), client.SpanKind(), client.Parent().SpanID())
	}
	want := "00-" + traceID + "-" + client.SpanContext().SpanID().String() + "-01"
	if got := sent.Get("traceparent"); len(got) != 1 || got[0] != want {
		t.Errorf("traceparent metadata %v, want %s", got, want)
	}
	if got := sent.Get("tracestate"); len(got) != 1 || got[0] != "cinema=t1" {
		t.Errorf("tracestate metadata %v", got)
	}
	if got := sent.Get("x-request-id"); len(got) != 1 || got[0] != "req-1" {
		t.Errorf("other metadata lost: %v", sent)
	}
}

func TestMalformedTraceparentStartsANewTrace(t *testing.T) {
	tr, _ := recordingTracing()
	r := httptest.NewRequest("GET", "/v1/movies", nil)
	r.Header.Set("Traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")
	r.Header.Set("Tracestate", "vendor=1")
	_, span := tr.startServer(r, "req-2")
	defer span.End()
	if span.(sdktrace.ReadOnlySpan).Parent().IsValid() || !span.SpanContext().IsValid() {
		t.Fatal("a malformed traceparent must give a root span")
	}
	if span.SpanContext().TraceState().Len() != 0 {
		t.Fatal("the tracestate of a discarded traceparent was kept")
	}
}
