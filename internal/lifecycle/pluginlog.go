package lifecycle

import (
	"context"
	"io"
	"log"
	"log/slog"

	"github.com/hashicorp/go-hclog"
)

// pluginLogger adapts go-plugin's hclog.Logger to slog. Lines an actor wrote
// (they carry the actor's "timestamp") keep their level; go-plugin's own
// chatter, panic traces included, goes to debug: the supervisor reports
// each exit itself, with its cause.
type pluginLogger struct {
	hclog.Logger // for the methods go-plugin does not use here: a null logger
	l            *slog.Logger
}

// NewPluginLogger returns go-plugin's logger writing to l.
func NewPluginLogger(l *slog.Logger) hclog.Logger {
	return &pluginLogger{Logger: hclog.NewNullLogger(), l: l}
}

func (p *pluginLogger) Log(level hclog.Level, msg string, args ...any) {
	lv := slog.LevelDebug
	var kept []any
	fromActor := false
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "timestamp" {
			fromActor = true
			continue
		}
		kept = append(kept, args[i], args[i+1])
	}
	if fromActor {
		switch level {
		case hclog.Info:
			lv = slog.LevelInfo
		case hclog.Warn:
			lv = slog.LevelWarn
		case hclog.Error:
			lv = slog.LevelError
		}
	}
	p.l.Log(context.Background(), lv, msg, kept...)
}

func (p *pluginLogger) Trace(msg string, args ...any) { p.Log(hclog.Trace, msg, args...) }
func (p *pluginLogger) Debug(msg string, args ...any) { p.Log(hclog.Debug, msg, args...) }
func (p *pluginLogger) Info(msg string, args ...any)  { p.Log(hclog.Info, msg, args...) }
func (p *pluginLogger) Warn(msg string, args ...any)  { p.Log(hclog.Warn, msg, args...) }
func (p *pluginLogger) Error(msg string, args ...any) { p.Log(hclog.Error, msg, args...) }
func (p *pluginLogger) IsTrace() bool                 { return false }
func (p *pluginLogger) IsDebug() bool                 { return p.l.Enabled(context.Background(), slog.LevelDebug) }
func (p *pluginLogger) IsInfo() bool                  { return true }
func (p *pluginLogger) IsWarn() bool                  { return true }
func (p *pluginLogger) IsError() bool                 { return true }
func (p *pluginLogger) GetLevel() hclog.Level {
	if p.IsDebug() {
		return hclog.Debug
	}
	return hclog.Info
}
func (p *pluginLogger) With(args ...any) hclog.Logger {
	return &pluginLogger{Logger: p.Logger, l: p.l.With(args...)}
}
func (p *pluginLogger) Named(string) hclog.Logger      { return p }
func (p *pluginLogger) ResetNamed(string) hclog.Logger { return p }
func (p *pluginLogger) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return slog.NewLogLogger(p.l.Handler(), slog.LevelDebug)
}
func (p *pluginLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return p.StandardLogger(nil).Writer()
}
