package cluster

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// slogWriter adapts the *log.Logger that hedge and spindle require to slog.
// Each Write is one log line. They log every lock round ("round 12 took
// 3ms", "leader active (not me)"), so lines go to Debug; lines that report a
// failure go to Warn.
type slogWriter struct {
	l *slog.Logger
}

func (w slogWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, "\r\n"))
	lvl := slog.LevelDebug
	if lm := strings.ToLower(msg); strings.Contains(lm, "fail") || strings.Contains(lm, "error") {
		lvl = slog.LevelWarn
	}
	w.l.Log(context.Background(), lvl, msg)
	return len(p), nil
}

// newStdLogger returns a *log.Logger writing into l.
func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l}, "", 0)
}
