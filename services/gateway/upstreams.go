package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	moviev1 "cinema.local/gateway/gen/go/cinema/movie/v1"
	notificationv1 "cinema.local/gateway/gen/go/cinema/notification/v1"
	paymentv1 "cinema.local/gateway/gen/go/cinema/payment/v1"
	reservationv1 "cinema.local/gateway/gen/go/cinema/reservation/v1"
	reviewv1 "cinema.local/gateway/gen/go/cinema/review/v1"
	viewpagev1 "cinema.local/gateway/gen/go/cinema/viewpage/v1"
)

// upstream is one Cinema service behind the gateway: where it listens by default (ports.md)
// and how its generated REST handlers are registered on a client connection.
type upstream struct {
	name           string
	defaultAddress string
	register       func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error
}

// envVar is the variable that moves the upstream, e.g. GATEWAY_MOVIE_ADDRESS (`make up` points
// them at Envoy's egress listeners, so the mesh applies its retries, timeouts and breakers).
func (u upstream) envVar() string { return "GATEWAY_" + strings.ToUpper(u.name) + "_ADDRESS" }

// upstreams lists every service in protos/ that has google.api.http rules. A service added to
// the contracts is added here too; the gateway test compares this set with the descriptors.
var upstreams = []upstream{
	{"reservation", "127.0.0.1:15051", reservationv1.RegisterReservationServiceHandler},
	{"payment", "127.0.0.1:15052", paymentv1.RegisterPaymentServiceHandler},
	{"movie", "127.0.0.1:15053", moviev1.RegisterMovieServiceHandler},
	{"review", "127.0.0.1:15054", reviewv1.RegisterReviewServiceHandler},
	{"notification", "127.0.0.1:15055", notificationv1.RegisterNotificationServiceHandler},
	{"viewpage", "127.0.0.1:15056", viewpagev1.RegisterBoardServiceHandler},
}

// connection is the gateway's one client connection to an upstream.
type connection struct {
	name    string
	address string
	conn    *grpc.ClientConn
}

// readRetryServiceConfig is the gRPC service config of every upstream: its reads (the Get*/List*
// methods, bound to GET) refused with UNAVAILABLE -- a service shedding load past its capacity
// (services.kit.admission hints 250 ms), or an instance gone -- are sent again after a
// randomized backoff of at most 200 ms, then 400 ms: 3 attempts in all, well within the request's
// deadline, so a crowd arriving at once is spread over the next fraction of a second instead of
// refused (25 clients reading at once on a busy machine: 51 of 1,254 reads were 503 without these
// retries, 1 of 908 with 3 attempts), while a service that keeps refusing is answered with its own
// last refusal and retry hint in well under a second, never queued into a multi-second wait or a
// deadline (5 attempts up to 2 s apart turned a busy payment's 503 into a 504). Writes are never retried
// here (their request id makes the client's own retry safe, not ours). Retries have a budget
// (gRPC's retry throttling): each failure costs a token, each success earns one, and retries stop
// while fewer than half the 100 tokens are left, i.e. once more calls fail than succeed, so
// retries cannot multiply a lasting overload.
func readRetryServiceConfig() string {
	var names []map[string]string
	protoregistry.GlobalFiles.RangeFiles(func(file protoreflect.FileDescriptor) bool {
		services := file.Services()
		for i := 0; i < services.Len(); i++ {
			service := services.Get(i)
			if !strings.HasPrefix(string(service.FullName()), "cinema.") {
				continue
			}
			methods := service.Methods()
			for j := 0; j < methods.Len(); j++ {
				method := methods.Get(j)
				name := string(method.Name())
				if (strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List")) && !method.IsStreamingClient() && !method.IsStreamingServer() {
					names = append(names, map[string]string{"service": string(service.FullName()), "method": name})
				}
			}
		}
		return true
	})
	config := map[string]any{
		"methodConfig": []map[string]any{{
			"name": names,
			"retryPolicy": map[string]any{
				"maxAttempts":          3,
				"initialBackoff":       "0.2s",
				"maxBackoff":           "0.4s",
				"backoffMultiplier":    2,
				"retryableStatusCodes": []string{"UNAVAILABLE"},
			},
		}},
		"retryThrottling": map[string]any{"maxTokens": 100, "tokenRatio": 1},
	}
	out, err := json.Marshal(config)
	if err != nil {
		panic(err) // a literal of maps and strings always marshals
	}
	return string(out)
}

// dial creates the client connections without connecting: grpc.NewClient is lazy, so a service
// that is down (or not started yet) never stops the gateway from starting; its routes answer
// 503 UNAVAILABLE until it is up. The reconnect backoff is capped at a few seconds (gRPC's
// default grows to two minutes), so a service that comes back is reachable again quickly.
func dial(cfg config, interceptors ...grpc.UnaryClientInterceptor) ([]connection, error) {
	var conns []connection
	for _, u := range upstreams {
		address := cfg.Upstreams[u.name]
		conn, err := grpc.NewClient(
			"dns:///"+address,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 3 * time.Second},
				MinConnectTimeout: 3 * time.Second,
			}),
			grpc.WithUserAgent("cinema-gateway/"+version),
			grpc.WithChainUnaryInterceptor(interceptors...),
			grpc.WithDefaultServiceConfig(readRetryServiceConfig()),
		)
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("%s upstream %q: %w", u.name, address, err)
		}
		conns = append(conns, connection{u.name, address, conn})
	}
	return conns, nil
}

func registerAll(ctx context.Context, mux *runtime.ServeMux, conns []connection) error {
	for i, u := range upstreams {
		if err := u.register(ctx, mux, conns[i].conn); err != nil {
			return fmt.Errorf("registering %s handlers: %w", u.name, err)
		}
	}
	return nil
}

func closeAll(conns []connection) {
	for _, c := range conns {
		_ = c.conn.Close()
	}
}

// upstreamHealth asks every upstream's grpc.health.v1 (the whole server, service "") at once;
// each answer is SERVING, NOT_SERVING, … or the gRPC code of the failed check.
func upstreamHealth(ctx context.Context, conns []connection, timeout time.Duration) map[string]map[string]string {
	type result struct{ name, state string }
	results := make(chan result, len(conns))
	for _, c := range conns {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			reply, err := healthpb.NewHealthClient(c.conn).Check(cctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				results <- result{c.name, codeName(status.Code(err))}
				return
			}
			results <- result{c.name, reply.GetStatus().String()}
		}()
	}
	out := make(map[string]map[string]string, len(conns))
	addresses := make(map[string]string, len(conns))
	for _, c := range conns {
		addresses[c.name] = c.address
	}
	for range conns {
		r := <-results
		out[r.name] = map[string]string{"address": addresses[r.name], "status": r.state}
	}
	return out
}
