package sharedobject_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/rso-server/rso/client"
	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/sharedobject"
)

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// What clients can cause is logged for the operator — who, from where, why — but a flood of it is not:
// 30 refused tokens give 20 lines and one line counting the other 10; an abuse close names its user.
func TestAlarmsAreLoggedRateLimited(t *testing.T) {
	secret := []byte("test-secret-0123456789")
	var logs logBuffer
	n := startNode(t, startNATS(t, ""), func(c *sharedobject.Config) {
		c.Auth = auth.NewVerifier(secret)
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	for range 30 {
		if _, err := client.Dial(ctxT(t), n.url, client.Options{Token: "not-a-token"}); err == nil {
			t.Fatal("a bad token was let in")
		}
	}
	tok, err := auth.Issue(secret, auth.Claims{User: "mallory", Read: []string{"**"}})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, n.url, tok)
	for range 400 {
		if c.WriteRaw([]byte(`nonsense`)) != nil {
			break
		}
	}
	<-c.Done()
	waitFor(t, "the abuse close and the summary of refused tokens in the log", func() bool {
		s := logs.String()
		return strings.Contains(s, "kind=token count=10") && strings.Contains(s, `msg="connection closed: abuse"`)
	})
	s := logs.String()
	if n := strings.Count(s, `msg="connection refused: bad token"`); n != 20 {
		t.Errorf("%d lines for refused tokens, want 20 (then a summary):\n%s", n, s)
	}
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "connection closed: abuse") && (!strings.Contains(line, "user=mallory") || !strings.Contains(line, "remote=127.0.0.1:")) {
			t.Errorf("the abuse line does not say who: %s", line)
		}
	}
}
