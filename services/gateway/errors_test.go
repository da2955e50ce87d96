package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// statusBody is a google.rpc.Status as the gateway writes it (JSON).
type statusBody struct {
	Code    int              `json:"code"`
	Message string           `json:"message"`
	Details []map[string]any `json:"details"`
}

func refusal(t *testing.T, rec *httptest.ResponseRecorder) statusBody {
	t.Helper()
	var body statusBody
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("not a google.rpc.Status JSON body: %v: %s", err, rec.Body.String())
	}
	return body
}

func reasonOf(body statusBody) string {
	for _, d := range body.Details {
		if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" {
			return fmt.Sprint(d["reason"]) + "@" + fmt.Sprint(d["domain"])
		}
	}
	return ""
}

// The gateway's own refusals carry the reasons and domain the edge's have (mesh.ingress.errors).
func TestRoutingRefusalsAreStatusBodiesWithErrorInfo(t *testing.T) {
	mux := runtime.NewServeMux(runtime.WithErrorHandler(errorHandler), runtime.WithRoutingErrorHandler(routingErrorHandler))
	if err := mux.HandlePath(http.MethodGet, "/v1/things", func(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
		w.WriteHeader(http.StatusOK)
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		status, code int
		reason       string
	}{
		{http.MethodGet, "/v1/no-such-thing", http.StatusNotFound, int(codes.NotFound), "ROUTE_NOT_FOUND@cinema"},
		{http.MethodPut, "/v1/things", http.StatusMethodNotAllowed, int(codes.Unimplemented), "METHOD_NOT_ALLOWED@cinema"},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		body := refusal(t, rec)
		if rec.Code != tc.status || body.Code != tc.code || reasonOf(body) != tc.reason || body.Message == "" {
			t.Errorf("%s %s: %d %+v", tc.method, tc.path, rec.Code, body)
		}
	}
}

func TestABodyOverTheLimitIs413ResourceExhausted(t *testing.T) {
	mux := runtime.NewServeMux()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1/movies", nil)
	// what grpc-gateway's generated code makes of http.MaxBytesReader's refusal
	err := status.Errorf(codes.InvalidArgument, "%v", &http.MaxBytesError{Limit: 1024})
	errorHandler(context.Background(), mux, &runtime.JSONPb{}, rec, r, err)
	body := refusal(t, rec)
	if rec.Code != http.StatusRequestEntityTooLarge || body.Code != int(codes.ResourceExhausted) ||
		reasonOf(body) != "REQUEST_TOO_LARGE@cinema" {
		t.Errorf("%d %+v", rec.Code, body)
	}
}

func TestAServiceTheGatewayCannotReachIs503WithRetryInfo(t *testing.T) {
	mux := runtime.NewServeMux()
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/v1/board", nil)
	info := &requestInfo{rpc: "/cinema.viewpage.v1.BoardService/GetBoard"}
	r = r.WithContext(context.WithValue(r.Context(), infoKey{}, info))
	err := status.Error(codes.Unavailable, "connection error: desc = \"dial tcp 127.0.0.1:1: connect: connection refused\"")
	errorHandler(r.Context(), mux, &runtime.JSONPb{}, rec, r, err)
	body := refusal(t, rec)
	retry := false
	for _, d := range body.Details {
		retry = retry || d["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
	}
	if rec.Code != http.StatusServiceUnavailable || body.Code != int(codes.Unavailable) || !retry ||
		reasonOf(body) != "UNAVAILABLE@cinema" {
		t.Errorf("%d %+v", rec.Code, body)
	}
}

// The reads of every upstream, and only they, are retried on UNAVAILABLE, within a budget.
func TestReadRetryServiceConfig(t *testing.T) {
	var config struct {
		MethodConfig []struct {
			Name []struct {
				Service string `json:"service"`
				Method  string `json:"method"`
			} `json:"name"`
			RetryPolicy struct {
				MaxAttempts          int      `json:"maxAttempts"`
				RetryableStatusCodes []string `json:"retryableStatusCodes"`
			} `json:"retryPolicy"`
		} `json:"methodConfig"`
		RetryThrottling map[string]float64 `json:"retryThrottling"`
	}
	if err := json.Unmarshal([]byte(readRetryServiceConfig()), &config); err != nil {
		t.Fatal(err)
	}
	methods := map[string]bool{}
	for _, n := range config.MethodConfig[0].Name {
		methods[n.Service+"/"+n.Method] = true
	}
	for _, read := range []string{"cinema.viewpage.v1.BoardService/GetBoard", "cinema.movie.v1.MovieService/ListMovies"} {
		if !methods[read] {
			t.Errorf("%s is not retried", read)
		}
	}
	for _, write := range []string{"cinema.reservation.v1.ReservationService/CreateReservation", "cinema.movie.v1.MovieService/DeleteMovie"} {
		if methods[write] {
			t.Errorf("%s must not be retried by the gateway", write)
		}
	}
	// grpc-go parses it when the connection is made: a config it rejects would stop the gateway
	conns, err := dial(config0())
	if err != nil {
		t.Fatalf("the service config is refused: %v", err)
	}
	closeAll(conns)
	if p := config.MethodConfig[0].RetryPolicy; p.MaxAttempts != 3 || len(p.RetryableStatusCodes) != 1 || config.RetryThrottling["maxTokens"] == 0 {
		t.Errorf("%+v %+v", p, config.RetryThrottling)
	}
}

func config0() config {
	cfg, err := loadConfig(lookup(map[string]string{}))
	if err != nil {
		panic(err)
	}
	return cfg
}
