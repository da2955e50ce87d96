package main

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func lookup(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := loadConfig(lookup(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:18090" || cfg.MetricsAddr != "127.0.0.1:19108" || !cfg.MetricsEnabled {
		t.Fatalf("unexpected listen defaults: %+v", cfg)
	}
	if cfg.CallTimeout != 10*time.Second || cfg.ShutdownTimeout != 10*time.Second || cfg.MaxBodyBytes != 1<<20 {
		t.Fatalf("unexpected timeouts/limits: %+v", cfg)
	}
	want := map[string]string{
		"reservation": "127.0.0.1:15051", "payment": "127.0.0.1:15052", "movie": "127.0.0.1:15053",
		"review": "127.0.0.1:15054", "notification": "127.0.0.1:15055", "viewpage": "127.0.0.1:15056",
	}
	for name, addr := range want {
		if cfg.Upstreams[name] != addr {
			t.Errorf("%s: got %q, want %q", name, cfg.Upstreams[name], addr)
		}
	}
}

func TestConfigOverridesAndErrors(t *testing.T) {
	cfg, err := loadConfig(lookup(map[string]string{
		"GATEWAY_HTTP_PORT": "8080", "GATEWAY_MOVIE_ADDRESS": "127.0.0.1:16053", "GATEWAY_CALL_TIMEOUT_S": "0.5",
		"GATEWAY_METRICS_ENABLED": "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != "127.0.0.1:8080" || cfg.Upstreams["movie"] != "127.0.0.1:16053" ||
		cfg.CallTimeout != 500*time.Millisecond || cfg.MetricsEnabled {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	_, err = loadConfig(lookup(map[string]string{
		"GATEWAY_HTTP_PORT": "http", "GATEWAY_PAYMENT_ADDRESS": "nohost", "GATEWAY_CALL_TIMEOUT_S": "0",
	}))
	if err == nil {
		t.Fatal("bad values accepted")
	}
	for _, name := range []string{"GATEWAY_HTTP_PORT", "GATEWAY_PAYMENT_ADDRESS", "GATEWAY_CALL_TIMEOUT_S"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestTraceContext(t *testing.T) {
	const given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r := httptest.NewRequest("GET", "/v1/movies", nil)
	r.Header.Set("Traceparent", given)
	r.Header.Set("Tracestate", "vendor=1")
	r.Header.Set("X-Request-Id", "req-1")
	traceID, requestID := ensureTraceContext(r)
	if traceID != "4bf92f3577b34da6a3ce929d0e0e4736" || requestID != "req-1" || r.Header.Get("Traceparent") != given ||
		r.Header.Get("Tracestate") != "vendor=1" {
		t.Fatalf("a valid context must pass unchanged: %q %q %v", traceID, requestID, r.Header)
	}
	for _, bad := range []string{"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Traceparent", bad)
		r.Header.Set("Tracestate", "vendor=1")
		traceID, requestID := ensureTraceContext(r)
		if validTraceID(r.Header.Get("Traceparent")) != traceID || traceID == "" || requestID == "" {
			t.Errorf("%q: no fresh context: %v", bad, r.Header)
		}
		if r.Header.Get("Tracestate") != "" {
			t.Errorf("%q: tracestate of a discarded traceparent kept", bad)
		}
	}
}

func TestHeaderMatcher(t *testing.T) {
	for header, want := range map[string]string{"traceparent": "traceparent", "X-REQUEST-ID": "x-request-id", "Tracestate": "tracestate"} {
		if got, ok := headerMatcher(header); !ok || got != want {
			t.Errorf("%s -> %q %v", header, got, ok)
		}
	}
	for _, header := range []string{"X-Role", "Grpc-Metadata-Role", "Cookie-Monster"} {
		if got, ok := headerMatcher(header); ok {
			t.Errorf("%s must not be forwarded (as %q)", header, got)
		}
	}
}

func TestTransportFailures(t *testing.T) {
	if !isTransportFailure(status.New(codes.Unavailable, "connection error: desc = \"dial tcp 127.0.0.1:1: refused\"")) {
		t.Error("grpc-go's dial failure not recognised")
	}
	retried := "max retries exhausted: failed after 3 attempts: rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused\""
	if !isTransportFailure(lastAttempt(status.New(codes.Unavailable, retried))) {
		t.Error("a retried read that never reached its service is a transport failure")
	}
	own := lastAttempt(status.New(codes.Unavailable, "max retries exhausted: failed after 3 attempts: rpc error: code = Unavailable desc = movie is overloaded"))
	if isTransportFailure(own) || own.Message() != "movie is overloaded" || own.Code() != codes.Unavailable {
		t.Errorf("a service's own refusal, retried, is passed on as it was: %v", own)
	}
	if isTransportFailure(status.New(codes.Unavailable, "payment is unavailable; retry in 1 s")) {
		t.Error("a service's own UNAVAILABLE must pass unchanged")
	}
	if got := serviceOf("/cinema.movie.v1.MovieService/ListMovies"); got != "cinema.movie.v1.MovieService" {
		t.Errorf("serviceOf: %q", got)
	}
}

func TestOpenAPIDocument(t *testing.T) {
	doc, err := openAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), `"title": "Cinema API"`) || !strings.Contains(string(doc), `"MovieService_ListMovies"`) {
		t.Fatal("document lacks its title or an operation")
	}
}

func TestIfNoneMatchWeakComparison(t *testing.T) {
	tag := `"abc"`
	for _, c := range []struct {
		headers []string
		want    bool
	}{
		{nil, false},
		{[]string{`"abc"`}, true},
		{[]string{`W/"abc"`}, true},
		{[]string{`"x", "abc"`}, true},
		{[]string{`"x"`, `"abc"`}, true},
		{[]string{"*"}, true},
		{[]string{`"abcd"`}, false},
	} {
		if got := matches(c.headers, tag); got != c.want {
			t.Errorf("matches(%q) = %v, want %v", c.headers, got, c.want)
		}
	}
}

func TestCacheClass(t *testing.T) {
	for _, c := range []struct {
		method, path, auth string
		want               cacheability
	}{
		{"GET", "/v1/board", "", public},
		{"GET", "/v1/board/movies/x", "", public},
		{"GET", "/v1/movies", "", public},
		{"GET", "/v1/movies/x/screenings", "", public},
		{"GET", "/v1/board", "Bearer t", private},
		{"GET", "/v1/board/reservations", "", private},
		{"GET", "/v1/board/reservations", "Bearer t", private},
		{"POST", "/v1/movies", "", notCacheable},
		{"GET", "/v1/reservations", "Bearer t", notCacheable},
		{"GET", "/v1/boards", "", notCacheable},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		if got := cacheClass(r); got != c.want {
			t.Errorf("%s %s (auth %q): got %v, want %v", c.method, c.path, c.auth, got, c.want)
		}
	}
}
