package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// config is the whole configuration of the gateway, read once from the environment at start-up.
// Every field has a safe default (loopback addresses, the ports of notes/ports.md); a value that
// does not parse stops the gateway with a message instead of being silently replaced.
type config struct {
	HTTPAddr        string        // GATEWAY_HTTP_HOST:GATEWAY_HTTP_PORT
	MetricsEnabled  bool          // GATEWAY_METRICS_ENABLED
	MetricsAddr     string        // GATEWAY_METRICS_HOST:GATEWAY_METRICS_PORT
	CallTimeout     time.Duration // GATEWAY_CALL_TIMEOUT_S: deadline of an upstream call without grpc-timeout
	ShutdownTimeout time.Duration // GATEWAY_SHUTDOWN_TIMEOUT_S: how long in-flight requests may drain
	MaxBodyBytes    int64         // GATEWAY_MAX_BODY_KIB: larger request bodies are refused (400)
	LogLevel        slog.Level    // GATEWAY_LOG_LEVEL: DEBUG, INFO, WARNING, ERROR
	OTLPEndpoint    string        // GATEWAY_OTLP_ENDPOINT: http://host:port of an OTLP/HTTP collector; empty = no tracing
	PublicMaxAge    int           // GATEWAY_PUBLIC_MAX_AGE_S: Cache-Control max-age of anonymous public reads; 0 = no-cache (revalidate)
	Upstreams       map[string]string
}

// env reads GATEWAY_* variables from a lookup function (os.LookupEnv in main, a map in tests)
// and remembers the first error, so loadConfig can report every bad variable's name.
type env struct {
	lookup func(string) (string, bool)
	errs   []string
}

func (e *env) str(name, fallback string) string {
	if v, ok := e.lookup(name); ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return fallback
}

func (e *env) integer(name string, fallback, lo, hi int) int {
	raw := e.str(name, strconv.Itoa(fallback))
	n, err := strconv.Atoi(raw)
	if err != nil || n < lo || n > hi {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q is not an integer in %d..%d", name, raw, lo, hi))
		return fallback
	}
	return n
}

func (e *env) port(name string, fallback int) int { return e.integer(name, fallback, 0, 65535) }

func (e *env) seconds(name string, fallback float64) time.Duration {
	raw := e.str(name, strconv.FormatFloat(fallback, 'f', -1, 64))
	s, err := strconv.ParseFloat(raw, 64)
	if err != nil || s < 0 {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q is not a number of seconds >= 0", name, raw))
		s = fallback
	}
	return time.Duration(s * float64(time.Second))
}

func (e *env) boolean(name string, fallback bool) bool {
	raw := e.str(name, strconv.FormatBool(fallback))
	switch strings.ToLower(raw) {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	e.errs = append(e.errs, fmt.Sprintf("%s=%q is not a boolean", name, raw))
	return fallback
}

func (e *env) level(name string) slog.Level {
	raw := e.str(name, "INFO")
	switch strings.ToUpper(raw) {
	case "DEBUG":
		return slog.LevelDebug
	case "INFO":
		return slog.LevelInfo
	case "WARN", "WARNING":
		return slog.LevelWarn
	case "ERROR", "CRITICAL":
		return slog.LevelError
	}
	e.errs = append(e.errs, fmt.Sprintf("%s=%q is not a log level (DEBUG, INFO, WARNING, ERROR)", name, raw))
	return slog.LevelInfo
}

func (e *env) address(name, fallback string) string {
	raw := e.str(name, fallback)
	if _, _, err := net.SplitHostPort(raw); err != nil {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q is not host:port", name, raw))
		return fallback
	}
	return raw
}

// endpoint reads an optional http(s)://host:port URL (a path is allowed, e.g. /v1/traces).
func (e *env) endpoint(name string) string {
	raw := e.str(name, "")
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		e.errs = append(e.errs, fmt.Sprintf("%s=%q is not an http(s)://host:port URL", name, raw))
		return ""
	}
	return raw
}

func loadConfig(lookup func(string) (string, bool)) (config, error) {
	e := &env{lookup: lookup}
	cfg := config{
		HTTPAddr:        net.JoinHostPort(e.str("GATEWAY_HTTP_HOST", "127.0.0.1"), strconv.Itoa(e.port("GATEWAY_HTTP_PORT", 18090))),
		MetricsEnabled:  e.boolean("GATEWAY_METRICS_ENABLED", true),
		MetricsAddr:     net.JoinHostPort(e.str("GATEWAY_METRICS_HOST", "127.0.0.1"), strconv.Itoa(e.port("GATEWAY_METRICS_PORT", 19108))),
		CallTimeout:     e.seconds("GATEWAY_CALL_TIMEOUT_S", 10),
		ShutdownTimeout: e.seconds("GATEWAY_SHUTDOWN_TIMEOUT_S", 10),
		LogLevel:        e.level("GATEWAY_LOG_LEVEL"),
		OTLPEndpoint:    e.endpoint("GATEWAY_OTLP_ENDPOINT"),
		PublicMaxAge:    e.integer("GATEWAY_PUBLIC_MAX_AGE_S", 5, 0, 3600),
		Upstreams:       map[string]string{},
	}
	cfg.MaxBodyBytes = int64(e.integer("GATEWAY_MAX_BODY_KIB", 1024, 1, 1<<20)) * 1024
	for _, u := range upstreams {
		cfg.Upstreams[u.name] = e.address(u.envVar(), u.defaultAddress)
	}
	if cfg.CallTimeout == 0 {
		e.errs = append(e.errs, "GATEWAY_CALL_TIMEOUT_S must be > 0 (every upstream call has a deadline)")
	}
	if len(e.errs) > 0 {
		return cfg, fmt.Errorf("bad configuration: %s", strings.Join(e.errs, "; "))
	}
	return cfg, nil
}

func loadConfigFromEnv() (config, error) { return loadConfig(os.LookupEnv) }
