// Package ratelog writes the log lines that clients can cause — refused tokens, abuse and oversize
// closes, slow consumers — without letting them flood the log: each kind of line is written at most a
// burst at a time and then one per interval, and what was left out is summed up in one line once the
// interval is over.
package ratelog

import (
	"log/slog"
	"sync"
	"time"
)

// Logger rate-limits warnings by kind.
type Logger struct {
	log   *slog.Logger
	burst int
	every time.Duration

	mu    sync.Mutex
	kinds map[string]*kind
}

type kind struct {
	tokens     float64
	last       time.Time
	suppressed int
	summary    *time.Timer // pending while lines are being left out
}

// New writes through log at most burst lines of one kind at once, refilled at one per every.
func New(log *slog.Logger, burst int, every time.Duration) *Logger {
	return &Logger{log: log, burst: burst, every: every, kinds: map[string]*kind{}}
}

// Warn writes msg with args at level warn, unless lines of this kind are being left out; then it counts
// the line, and a summary says how many were left out once every has passed. kind is a constant (the
// set of kinds must stay small).
func (l *Logger) Warn(kindName, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	k := l.kinds[kindName]
	if k == nil {
		k = &kind{tokens: float64(l.burst), last: now}
		l.kinds[kindName] = k
	}
	k.tokens = min(float64(l.burst), k.tokens+now.Sub(k.last).Seconds()/l.every.Seconds())
	k.last = now
	if k.tokens < 1 {
		k.suppressed++
		if k.summary == nil {
			k.summary = time.AfterFunc(l.every, func() { l.summarize(kindName) })
		}
		l.mu.Unlock()
		return
	}
	k.tokens--
	l.mu.Unlock()
	l.log.Warn(msg, args...)
}

func (l *Logger) summarize(kindName string) {
	l.mu.Lock()
	k := l.kinds[kindName]
	n := k.suppressed
	k.suppressed, k.summary = 0, nil
	l.mu.Unlock()
	if n > 0 {
		l.log.Warn("log lines left out: too many of one kind", "kind", kindName, "count", n, "within", l.every.String())
	}
}

// Stop cancels pending summaries and writes them now.
func (l *Logger) Stop() {
	l.mu.Lock()
	var pending []string
	for name, k := range l.kinds {
		if k.summary != nil && k.summary.Stop() {
			pending = append(pending, name)
		}
	}
	l.mu.Unlock()
	for _, name := range pending {
		l.summarize(name)
	}
}
