package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
)

// Headers the gateway forwards to the services as gRPC metadata under their own (lower-case)
// names, on top of what grpc-gateway forwards itself (`authorization`, x-forwarded-for/host):
// the W3C trace context, so a call keeps one trace id from the edge to the events it causes,
// and the request id, so one request can be found in every log. A client may not set other
// metadata keys: a service must be able to trust what it reads.
var forwardedHeaders = map[string]string{
	"Traceparent":  "traceparent",
	"Tracestate":   "tracestate",
	"Baggage":      "baggage",
	"X-Request-Id": "x-request-id",
}

func headerMatcher(key string) (string, bool) {
	if name, ok := forwardedHeaders[textproto.CanonicalMIMEHeaderKey(key)]; ok {
		return name, true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// version-00 traceparent: 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, ids not all zero.
var traceparentPattern = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$`)

const zeroTraceID = "00000000000000000000000000000000"
const zeroSpanID = "0000000000000000"

// validTraceID returns the trace id of a well-formed traceparent, or "".
func validTraceID(traceparent string) string {
	m := traceparentPattern.FindStringSubmatch(traceparent)
	if m == nil || m[1] == zeroTraceID || m[2] == zeroSpanID {
		return ""
	}
	return m[1]
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24 aborts the process instead)
	return hex.EncodeToString(b)
}

// ensureTraceContext makes every request carry a valid traceparent and an x-request-id before it
// is routed, and returns the trace id and request id for the access log.
//
// Without GATEWAY_OTLP_ENDPOINT the gateway makes no spans of its own: it passes the caller's
// trace context through unchanged, like a proxy without tracing (with it, tracing.go's
// startServer takes over for the REST routes). A request without one (or with a malformed one, which
// W3C says to discard along with its tracestate) starts a new sampled trace here, at the edge,
// so the services continue it and their logs and events share its id.
func ensureTraceContext(r *http.Request) (traceID, requestID string) {
	traceID = validTraceID(strings.TrimSpace(r.Header.Get("Traceparent")))
	if traceID == "" {
		traceID = randomHex(16)
		r.Header.Set("Traceparent", "00-"+traceID+"-"+randomHex(8)+"-01")
		r.Header.Del("Tracestate")
	}
	return traceID, ensureRequestID(r)
}

// ensureRequestID keeps the caller's x-request-id when it is sane, or sets a new one.
func ensureRequestID(r *http.Request) string {
	requestID := strings.TrimSpace(r.Header.Get("X-Request-Id"))
	if requestID == "" || len(requestID) > 200 || !printableASCII(requestID) {
		requestID = randomHex(16)
		r.Header.Set("X-Request-Id", requestID)
	}
	return requestID
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
