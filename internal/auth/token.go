// Package auth turns connection tokens (HS256 JWTs, PROTOCOL.md 1.8) into an
// Identity that says which objects a connection may read and write.
package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rso-server/rso/internal/ids"
	"github.com/rso-server/rso/internal/wire"
)

const (
	maxUserBytes = 200
	// Tolerated clock skew between the token issuer and this server.
	leeway = 5 * time.Second
	// Far above any sensible token, small enough that parsing stays cheap.
	maxTokenBytes = 16 << 10
)

// Error is a refused token (code unauthorized or token_expired, which servers map to close codes 4001
// and 4003); Message says what was wrong and how to fix it.
type Error = wire.Error

func unauthorized(format string, args ...any) *Error {
	return &Error{Code: wire.CodeUnauthorized, Message: fmt.Sprintf(format, args...)}
}

// Identity is who a connection is and what it may touch.
type Identity struct {
	User      string
	Anonymous bool
	Expires   time.Time // zero = never

	// all is set only by an anonymous Verifier, so that a hand-built
	// Identity{Anonymous: true} does not grant access to everything.
	all         bool
	read, write []Pattern
}

// CanRead reports whether id may subscribe to obj. Write implies read.
func (id *Identity) CanRead(persistent bool, obj string) bool {
	return id.CanWrite(persistent, obj) || id != nil && matchAny(id.read, persistent, obj)
}

// CanWrite reports whether id may update obj.
func (id *Identity) CanWrite(persistent bool, obj string) bool {
	return id != nil && (id.all || matchAny(id.write, persistent, obj))
}

func matchAny(ps []Pattern, persistent bool, obj string) bool {
	for _, p := range ps {
		if p.Match(persistent, obj) {
			return true
		}
	}
	return false
}

// Claims is what Issue puts in a token.
type Claims struct {
	User        string
	Read, Write []string
	TTL         time.Duration // 0 = the token never expires
}

type tokenClaims struct {
	jwt.RegisteredClaims
	RSO struct {
		Read  []string `json:"read,omitempty"`
		Write []string `json:"write,omitempty"`
	} `json:"rso"`
}

// Issue signs a token for c with HS256. It checks c as Verify would, so a
// mistake shows up here rather than as a refused connection.
func Issue(secret []byte, c Claims) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("auth: cannot issue a token without a secret")
	}
	if len(c.User) == 0 || len(c.User) > maxUserBytes {
		return "", fmt.Errorf("auth: user %q must be 1-%d bytes", c.User, maxUserBytes)
	}
	if c.TTL < 0 {
		return "", fmt.Errorf("auth: TTL %v is negative: use 0 for a token that never expires", c.TTL)
	}
	if _, err := compileAll(c.Read); err != nil {
		return "", fmt.Errorf("auth: read %w", err)
	}
	if _, err := compileAll(c.Write); err != nil {
		return "", fmt.Errorf("auth: write %w", err)
	}
	now := time.Now()
	var tc tokenClaims
	tc.Subject = c.User
	tc.IssuedAt = jwt.NewNumericDate(now)
	if c.TTL > 0 {
		tc.ExpiresAt = jwt.NewNumericDate(now.Add(c.TTL))
	}
	tc.RSO.Read, tc.RSO.Write = c.Read, c.Write
	return jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(secret)
}

func compileAll(ss []string) ([]Pattern, error) {
	ps := make([]Pattern, 0, len(ss))
	for _, s := range ss {
		p, err := CompilePattern(s)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Verifier checks tokens against one secret. It is safe for concurrent use.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for secret. With a nil or empty secret it runs
// in anonymous mode: every request gets a fresh anonymous Identity that may
// read and write everything (PROTOCOL.md 1.1 allows this on loopback only).
func NewVerifier(secret []byte) *Verifier {
	return &Verifier{
		secret: append([]byte(nil), secret...), // the caller may reuse its slice
		parser: jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithLeeway(leeway)),
	}
}

// Anonymous reports whether v has no secret and lets everyone in.
func (v *Verifier) Anonymous() bool { return len(v.secret) == 0 }

// Verify checks token and returns its Identity. In anonymous mode the token is
// ignored: without a secret nothing in it can be trusted. Errors are *Error.
func (v *Verifier) Verify(token string) (*Identity, error) {
	if v.Anonymous() {
		return &Identity{User: "anon-" + rand.Text()[:8], Anonymous: true, all: true}, nil
	}
	if token == "" {
		return nil, unauthorized("token is empty: pass a JWT signed with this server's -token-secret")
	}
	if len(token) > maxTokenBytes {
		return nil, unauthorized("token is %d bytes; the limit is %d: use fewer or broader patterns", len(token), maxTokenBytes)
	}
	var tc tokenClaims
	tok, err := v.parser.ParseWithClaims(token, &tc, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		return nil, classify(tok, &tc, err)
	}
	if tc.Subject == "" {
		return nil, unauthorized(`token has no "sub" claim: put the user id in "sub"`)
	}
	if len(tc.Subject) > maxUserBytes {
		return nil, unauthorized(`token "sub" is %d bytes; the limit is %d`, len(tc.Subject), maxUserBytes)
	}
	id := &Identity{User: tc.Subject}
	if tc.ExpiresAt != nil {
		id.Expires = tc.ExpiresAt.Time
	}
	if id.read, err = compileAll(tc.RSO.Read); err != nil {
		return nil, unauthorized("token claim rso.read: %v", err)
	}
	if id.write, err = compileAll(tc.RSO.Write); err != nil {
		return nil, unauthorized("token claim rso.write: %v", err)
	}
	return id, nil
}

// classify turns a jwt error into an *Error that says how to fix the token.
func classify(tok *jwt.Token, tc *tokenClaims, err error) *Error {
	var alg string
	if tok != nil {
		alg, _ = tok.Header["alg"].(string)
	}
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		detail := strings.TrimPrefix(err.Error(), jwt.ErrTokenMalformed.Error()+": ")
		return unauthorized(`token is malformed: %s; expected a JWT (header.payload.signature) whose "sub" is a string, `+
			`"exp" and "nbf" numbers, "rso.read" and "rso.write" lists of strings`, detail)
	case alg != "HS256":
		return unauthorized(`token is signed with alg %q: this server accepts only HS256`, alg)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return unauthorized("token signature is invalid: was it signed with this server's -token-secret?")
	case errors.Is(err, jwt.ErrTokenExpired):
		return &Error{Code: wire.CodeTokenExpired, Message: fmt.Sprintf("token expired at %s: get a new token",
			tc.ExpiresAt.UTC().Format(time.RFC3339))}
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return unauthorized(`token is not valid before %s ("nbf"): check the issuer's clock`,
			tc.NotBefore.UTC().Format(time.RFC3339))
	}
	return unauthorized("token is invalid: %v", err)
}

// FromRequest verifies the token in the query (?token=) or in the header
// "Authorization: Bearer <token>"; the query wins because browsers cannot set
// headers on a WebSocket upgrade.
func (v *Verifier) FromRequest(r *http.Request) (*Identity, error) {
	if v.Anonymous() {
		id, _ := v.Verify("")
		// Without a secret nothing proves who a client is, so it may simply say (a development convenience
		// that lets a page keep its name across reconnects).
		if user := r.URL.Query().Get("user"); user != "" {
			if !ids.Valid(user, 64) {
				return nil, unauthorized("?user=%q: use 1 to 64 letters, digits, '-' or '_'", clipText(user))
			}
			id.User = user
		}
		return id, nil
	}
	if token := r.URL.Query().Get("token"); token != "" {
		return v.Verify(token)
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, unauthorized("no token: pass ?token=<JWT> or the header Authorization: Bearer <JWT>")
	}
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") { // schemes are case-insensitive (RFC 9110)
		return nil, unauthorized(`Authorization header must be "Bearer <JWT>", not %q`, scheme)
	}
	return v.Verify(strings.TrimSpace(token))
}

func clipText(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
