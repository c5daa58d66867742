package platform

import (
	"context"
	"io"
	"log/slog"
	"strings"
)

// NewLogger returns a JSON logger writing one event per line to w, with the attribute stage on every
// line and every URL's credentials redacted (Redact). An unknown level means info.
func NewLogger(w io.Writer, level string, stage string) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, LogHandlerOptions(level))).With("stage", stage)
}

// ParseLevel maps debug|info|warn|error to a slog level; anything else is info.
func ParseLevel(level string) slog.Level {
	switch strings.ToLower(strings.TrimSpace(level)) {
	case "debug":
		return slog.LevelDebug
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

type loggerKey struct{}

// WithLogger returns a context carrying log, which Logger returns; the consumer loop uses it to hand each
// handler a logger already tagged with the event it is handling.
func WithLogger(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// Logger returns the logger carried by ctx (tagged with stage, event_id and subject inside a handler), or
// a logger that discards everything when there is none, so code under test needs no setup.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
