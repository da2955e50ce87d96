package main

import (
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc/grpclog"
)

// newLogger writes one JSON object per line on stderr, like the Python services' logs
// (timestamp, level, service, message and fields).
func newLogger(level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 {
				switch a.Key {
				case slog.TimeKey:
					a.Key = "timestamp"
					a.Value = slog.StringValue(a.Value.Time().UTC().Format("2006-01-02T15:04:05.000000Z"))
				case slog.MessageKey:
					a.Key = "message"
				}
			}
			return a
		},
	})
	return slog.New(h).With("service", "gateway")
}

// grpcLogger sends the logs of grpc-go and grpc-gateway (which log through grpclog) to the same
// JSON stream, so no plain-text line ever interleaves. grpc-go's INFO lines are dropped and its
// warnings (mostly "failed to connect" to a service that is down, once per reconnect attempt)
// are DEBUG: the access log already shows such a call as 503 UNAVAILABLE.
type grpcLogger struct{ log *slog.Logger }

func routeGRPCLogs(log *slog.Logger) {
	grpclog.SetLoggerV2(grpcLogger{log.With("logger", "grpc")})
}

func (g grpcLogger) Info(args ...any)                    {}
func (g grpcLogger) Infoln(args ...any)                  {}
func (g grpcLogger) Infof(format string, args ...any)    {}
func (g grpcLogger) Warning(args ...any)                 { g.log.Debug(fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any)               { g.log.Debug(fmt.Sprint(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) { g.log.Debug(fmt.Sprintf(format, args...)) }
func (g grpcLogger) Error(args ...any)                   { g.log.Error(fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any)                 { g.log.Error(fmt.Sprint(args...)) }
func (g grpcLogger) Errorf(format string, args ...any)   { g.log.Error(fmt.Sprintf(format, args...)) }
func (g grpcLogger) Fatal(args ...any)                   { g.log.Error(fmt.Sprint(args...)); os.Exit(1) }
func (g grpcLogger) Fatalln(args ...any)                 { g.log.Error(fmt.Sprint(args...)); os.Exit(1) }
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.log.Error(fmt.Sprintf(format, args...))
	os.Exit(1)
}
func (g grpcLogger) V(level int) bool { return level <= 0 }
