package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"

	// The google.rpc error details the services attach (BadRequest, ErrorInfo, RetryInfo,
	// ResourceInfo, …): registered so the JSON body can show them with their fields.
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
)

// errorHandler writes every failure as HTTP status + google.rpc.Status JSON body (code, message,
// details), using grpc-gateway's default mapping (NOT_FOUND → 404, UNAVAILABLE → 503, …).
//
// Two things are added to the default: a detail whose type the gateway does not know is dropped
// instead of turning the whole answer into a 500 "failed to marshal error message", and a 401
// carries an RFC 6750 `WWW-Authenticate: Bearer` challenge (grpc-gateway puts the bare status
// message there).
func errorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	var withHTTPStatus *runtime.HTTPStatusError
	inner := err
	if errors.As(err, &withHTTPStatus) {
		inner = withHTTPStatus.Err
	}
	st := status.Convert(inner)
	info := infoFrom(r.Context())
	if info != nil && info.grpcCode == "" {
		info.grpcCode = codeName(st.Code())
	}
	st = lastAttempt(st)
	st = knownDetailsOnly(st)
	st = readableMessage(st)
	if info != nil && isTransportFailure(st) {
		// grpc-go's own message names the address it could not dial: keep it for the log
		// (info.upstreamError), tell the client which service is down and when to try again.
		st = withDetails(status.New(codes.Unavailable, serviceOf(info.rpc)+" is unavailable; retry later"),
			&errdetails.ErrorInfo{Reason: "UNAVAILABLE", Domain: errorDomain},
			&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Second)})
	}
	if isBodyTooLarge(st) {
		// grpc-gateway reports the body reader's refusal as a decoding error (400): it is a
		// request over the gateway's size limit, 413 like the edge's own
		st = withDetails(status.New(codes.ResourceExhausted, "the request body is too large"),
			&errdetails.ErrorInfo{Reason: "REQUEST_TOO_LARGE", Domain: errorDomain})
		withHTTPStatus = &runtime.HTTPStatusError{HTTPStatus: http.StatusRequestEntityTooLarge}
	}
	err = st.Err()
	if withHTTPStatus != nil {
		err = &runtime.HTTPStatusError{HTTPStatus: withHTTPStatus.HTTPStatus, Err: err}
	}
	if st.Code() == codes.Unauthenticated {
		w = &bearerChallenge{ResponseWriter: w, challenge: challengeFor(r, st.Message())}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// readableMessage escapes the control characters of a message: grpc-gateway's query parser
// quotes the values it refused (`GET /v1/movies?pageSize=<ESC>&pageSize=x` answered "too many
// values for field \"page_size\": \x1b, x"), so a client's bytes would reach a terminal or log
// viewer raw. Found by tests/fuzz/test_rest_openapi.py.
func readableMessage(st *status.Status) *status.Status {
	message := st.Message()
	if !strings.ContainsFunc(message, isControl) {
		return st
	}
	var b strings.Builder
	for _, c := range message {
		if isControl(c) {
			fmt.Fprintf(&b, "\\u%04x", c)
			continue
		}
		b.WriteRune(c)
	}
	p := st.Proto()
	p.Message = b.String()
	return status.FromProto(p)
}

// isControl: C0 and C1 control characters and DEL; tab and newline stay (they are readable).
func isControl(c rune) bool {
	return c != '\t' && c != '\n' && unicode.IsControl(c)
}

func knownDetailsOnly(st *status.Status) *status.Status {
	p := st.Proto()
	kept := make([]*anypb.Any, 0, len(p.GetDetails()))
	for _, d := range p.GetDetails() {
		if _, err := protoregistry.GlobalTypes.FindMessageByURL(d.GetTypeUrl()); err != nil {
			slog.Warn("dropping an error detail of an unknown type", "type_url", d.GetTypeUrl())
			continue
		}
		kept = append(kept, d)
	}
	if len(kept) == len(p.GetDetails()) {
		return st
	}
	p.Details = kept
	return status.FromProto(p)
}

// routingErrorHandler keeps the HTTP status of a routing failure: grpc-gateway turns 405 into
// UNIMPLEMENTED, which its default mapping would answer with 501.
func routingErrorHandler(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var code codes.Code
	var reason, message string
	switch httpStatus {
	case http.StatusBadRequest:
		code, reason, message = codes.InvalidArgument, "BAD_REQUEST", "the request cannot be routed"
	case http.StatusNotFound:
		code, reason, message = codes.NotFound, "ROUTE_NOT_FOUND", "no such path at this API"
	case http.StatusMethodNotAllowed:
		code, reason, message = codes.Unimplemented, "METHOD_NOT_ALLOWED", r.Method+" is not allowed on this path"
	default:
		code, reason, message = codes.Internal, "ROUTING_FAILED", http.StatusText(httpStatus)
	}
	// the same reasons and domain as the edge's own refusals (mesh.ingress.errors)
	st := withDetails(status.New(code, message), &errdetails.ErrorInfo{Reason: reason, Domain: errorDomain})
	errorHandler(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: st.Err()})
}

// challengeFor is the RFC 6750 challenge: no token at all gets the bare scheme, a rejected one
// `error="invalid_token"` with the (sanitised) reason.
func challengeFor(r *http.Request, message string) string {
	if r.Header.Get("Authorization") == "" {
		return `Bearer realm="cinema"`
	}
	clean := strings.Map(func(c rune) rune {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return -1
		}
		return c
	}, message)
	return `Bearer realm="cinema", error="invalid_token", error_description="` + clean + `"`
}

type bearerChallenge struct {
	http.ResponseWriter
	challenge string
}

func (b *bearerChallenge) WriteHeader(code int) {
	if code == http.StatusUnauthorized {
		b.Header().Set("WWW-Authenticate", b.challenge)
	}
	b.ResponseWriter.WriteHeader(code)
}

func (b *bearerChallenge) Unwrap() http.ResponseWriter { return b.ResponseWriter }

// errorDomain is the ErrorInfo domain of every error of the system (services.kit.grpc_errors).
const errorDomain = "cinema"

func withDetails(st *status.Status, details ...protoadapt.MessageV1) *status.Status {
	if with, err := st.WithDetails(details...); err == nil {
		return with
	}
	return st
}

// lastAttempt: the status of a read's last attempt. When the gateway's retries (upstreams.go) are
// spent, grpc-go prefixes the last status' message with its summary, "max retries exhausted: failed
// after 3 attempts: rpc error: code = Unavailable desc = <the message>"; the client gets the
// service's own message (and its details, which grpc-go keeps), as without retries.
func lastAttempt(st *status.Status) *status.Status {
	const summary = "max retries exhausted: "
	m := st.Message()
	if !strings.HasPrefix(m, summary) {
		return st
	}
	i := strings.Index(m, " desc = ")
	if i < 0 {
		return st
	}
	p := st.Proto() // a copy
	p.Message = m[i+len(" desc = "):]
	return status.FromProto(p)
}

// isBodyTooLarge: the decoding error grpc-gateway makes of http.MaxBytesReader's refusal.
func isBodyTooLarge(st *status.Status) bool {
	return st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "http: request body too large")
}

// isTransportFailure: UNAVAILABLE raised by grpc-go itself (no connection to the service), as
// opposed to an UNAVAILABLE the service answered with its own message and details (e.g. payment
// unreachable from reservation, with RetryInfo), which is passed on untouched.
func isTransportFailure(st *status.Status) bool {
	if st.Code() != codes.Unavailable || len(st.Proto().GetDetails()) > 0 {
		return false
	}
	m := st.Message()
	return strings.HasPrefix(m, "connection error:") || strings.HasPrefix(m, "name resolver error:") ||
		strings.HasPrefix(m, "last connection error:") || strings.HasPrefix(m, "error reading from server:")
}

// serviceOf turns "/cinema.movie.v1.MovieService/ListMovies" into "cinema.movie.v1.MovieService".
func serviceOf(rpc string) string {
	if s := strings.TrimPrefix(rpc, "/"); s != "" {
		if i := strings.LastIndex(s, "/"); i > 0 {
			return s[:i]
		}
	}
	return "the service"
}
