package relay

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/ids"
	"github.com/rso-server/rso/internal/utf8x"
	"github.com/rso-server/rso/internal/wire"
)

// ServeTCP accepts raw TCP clients on ln until Shutdown (then it returns ErrServerClosed) or until ln
// fails. The protocol is the WebSocket's, one frame per line; the first frame must be auth (see
// docs/PROTOCOL.md §3.2), sent within AuthTimeout.
func (s *Server) ServeTCP(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors: wait a little and go on, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		if !s.track() {
			nc.Close()
			return ErrServerClosed
		}
		go func() {
			defer s.wg.Done()
			s.serveTCPConn(nc)
		}()
	}
}

// serveTCPConn runs one TCP client: auth, then frames until the socket ends.
func (s *Server) serveTCPConn(nc net.Conn) {
	s.m.open(epTCP)
	remote := nc.RemoteAddr().String()
	t := newTCPConn(nc, s.cfg.Limits.OutboundBytes, func(code int) {
		s.m.closed(epTCP, code)
		s.alarmClose("relay_tcp", code, "remote", remote)
	})
	var c *conn
	// Before auth the deadline is fixed: data without a newline must not keep an unauthenticated
	// connection open. After it, any data proves the client alive.
	authBy := time.Now().Add(s.cfg.AuthTimeout)
	deadline := func() time.Time {
		if c == nil {
			return authBy
		}
		return time.Now().Add(tcpIdle)
	}
	maxFrame := s.cfg.Limits.MaxFrameBytes
	err := t.readLoop(maxFrame, deadline, func(frame []byte, tooLarge int) {
		switch {
		case c != nil && tooLarge > 0:
			c.refuse(wire.CodeFrameTooLarge, tooLargeText(tooLarge, maxFrame), "")
		case c != nil:
			c.handle(frame)
		case tooLarge > 0:
			s.m.refused(epTCP, wire.CodeFrameTooLarge)
			t.Send(errorFrame(wire.CodeFrameTooLarge, "the auth "+tooLargeText(tooLarge, maxFrame), ""))
			t.Close(closeUnauthorized, "no valid auth frame")
		default:
			c = s.authTCP(t, frame)
		}
	})
	if c != nil {
		c.close()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if c == nil {
			t.Close(closeUnauthorized, "no auth frame in time")
		} else {
			t.Close(closeNoPong, "nothing received for too long; send a ping frame every 25 s")
		}
	} else {
		t.Close(closeNormal, "")
	}
	<-t.Done()
	nc.Close()
}

// authTCP checks the first frame, {"op":"auth","token":…} or, in anonymous mode, {"op":"auth","user":…},
// each with an optional "device". It returns the open connection, or nil after closing the socket.
func (s *Server) authTCP(t *tcpConn, frame []byte) *conn {
	fail := func(code, msg string, closeCode int) *conn {
		s.m.refused(epTCP, code)
		if closeCode == closeTokenExpired || code == wire.CodeUnauthorized {
			s.alarms.Warn("token", "connection refused: bad token", "endpoint", "relay_tcp", "code", code, "why", msg)
		}
		t.Send(errorFrame(code, msg, ""))
		t.Close(closeCode, msg)
		return nil
	}
	if !gjson.ValidBytes(frame) {
		return fail(wire.CodeBadJSON, "the first frame must be {\"op\":\"auth\",\"token\":\"…\"}", closeUnauthorized)
	}
	if !utf8.Valid(frame) {
		return fail(wire.CodeBadJSON, utf8x.InvalidFrame, closeUnauthorized)
	}
	f := gjson.ParseBytes(frame)
	if f.Get("op").Str != "auth" {
		return fail(wire.CodeUnauthorized, "the first frame must be {\"op\":\"auth\",\"token\":\"…\"}", closeUnauthorized)
	}
	device := f.Get("device")
	if device.Exists() && (device.Type != gjson.String || !ids.Valid(device.Str, maxDeviceBytes)) {
		return fail(wire.CodeBadFrame, "\"device\" must be 1 to 64 letters, digits, '-' or '_'", closeUnauthorized)
	}
	ident, err := s.verifyTCP(f)
	if err != nil {
		var ae *auth.Error
		if errors.As(err, &ae) && ae.Code == wire.CodeTokenExpired {
			return fail(wire.CodeTokenExpired, ae.Message, closeTokenExpired)
		}
		if ae != nil {
			return fail(ae.Code, ae.Message, closeUnauthorized)
		}
		return fail(wire.CodeUnauthorized, err.Error(), closeUnauthorized)
	}
	c := s.newConn(t, ident, device.Str)
	if code, text, err := c.open(); err != nil {
		s.log.Debug("relay connection refused", "user", ident.User, "err", err)
		c.close()
		t.Close(code, text)
		return nil
	}
	return c
}

// verifyTCP checks the auth frame's token exactly as /so and /relay check theirs (anonymous mode: "user"
// names the client, under the same rules as ?user=).
func (s *Server) verifyTCP(f gjson.Result) (*auth.Identity, error) {
	if s.cfg.Auth.Anonymous() {
		// Reuse FromRequest's rules for ?user= by building the query it reads.
		return s.cfg.Auth.FromRequest(anonymousRequest(f.Get("user").Str))
	}
	token := f.Get("token")
	if token.Type != gjson.String || token.Str == "" {
		return nil, &auth.Error{Code: wire.CodeUnauthorized, Message: "auth needs \"token\": a JWT signed with this server's -token-secret"}
	}
	return s.cfg.Auth.Verify(token.Str)
}

func anonymousRequest(user string) *http.Request {
	u := &url.URL{}
	if user != "" {
		u.RawQuery = url.Values{"user": {user}}.Encode()
	}
	return &http.Request{URL: u, Header: http.Header{}}
}
