package relay

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/rso-server/rso/internal/auth"
	"github.com/rso-server/rso/internal/ids"
	"github.com/rso-server/rso/internal/wire"
	"github.com/rso-server/rso/internal/wsconn"
)

// ServeHTTP upgrades a request to the private-chat WebSocket (mount it at /relay). The token comes as
// ?token= or "Authorization: Bearer"; without a secret (anonymous mode) ?user=NAME names the client, as on
// /so. ?device= is the client's stable device id (1–64 letters, digits, '-', '_'); without one each
// connection is its own device.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !wsconn.CheckUpgrade(w, r) { // before the token: a browser opening the URL learns what it is
		return
	}
	if s.isClosing() {
		http.Error(w, "server is shutting down; reconnect to another node", http.StatusServiceUnavailable)
		return
	}
	ident, err := s.cfg.Auth.FromRequest(r)
	if err != nil {
		code, msg := wire.CodeUnauthorized, err.Error()
		var ae *auth.Error
		if errors.As(err, &ae) {
			code, msg = ae.Code, ae.Message
		}
		s.m.refused(epWebSocket, code)
		s.alarms.Warn("token", "connection refused: bad token", "endpoint", "relay", "remote", r.RemoteAddr, "code", code, "why", msg)
		writeJSONError(w, http.StatusUnauthorized, code, msg)
		return
	}
	device := r.URL.Query().Get("device")
	if device != "" && !ids.Valid(device, maxDeviceBytes) {
		s.m.refused(epWebSocket, wire.CodeBadFrame)
		writeJSONError(w, http.StatusBadRequest, wire.CodeBadFrame, "?device= must be 1 to 64 letters, digits, '-' or '_'")
		return
	}
	ws, err := wsconn.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered
	}
	l := s.cfg.Limits
	s.m.open(epWebSocket)
	t := wsconn.New(ws, wsconn.Options{MaxMessageBytes: 16 * l.MaxFrameBytes, OutboundBytes: l.OutboundBytes,
		OnClose: func(code int) {
			s.m.closed(epWebSocket, code)
			s.alarmClose("relay", code, "user", ident.User, "remote", r.RemoteAddr)
		}})
	c := s.newConn(t, ident, device)
	if code, text, err := c.open(); err != nil {
		defer c.close()
		s.log.Debug("relay connection refused", "user", ident.User, "err", err)
		t.Close(code, text)
		<-t.Done()
		return
	}
	// The handler returns and the socket is read on goroutines of wsconn's, so that net/http lets go of
	// the request and its buffers and an idle connection waits on a small stack (memory per connection).
	t.Serve(c.handle, func(error) { c.close() })
}

func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"code": code, "message": msg})
}
