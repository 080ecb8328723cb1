package auth

import (
	"encoding/base64"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rso-server/rso/internal/wire"
)

var testSecret = []byte("test-secret-0123456789")

// sign makes a token with arbitrary claims, including ones Issue refuses to make.
func sign(t testing.TB, secret []byte, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

// rawToken builds a token by hand, for algorithms the library will not sign with.
func rawToken(header, payload, sig string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(header)) + "." + enc([]byte(payload)) + "." + sig
}

func issue(t testing.TB, c Claims) string {
	t.Helper()
	s, err := Issue(testSecret, c)
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return s
}

func TestVerifyGoodToken(t *testing.T) {
	v := NewVerifier(testSecret)
	id, err := v.Verify(issue(t, Claims{User: "alice", Read: []string{"slides/**"}, Write: []string{"persistent:room/*"}, TTL: time.Hour}))
	if err != nil {
		t.Fatal(err)
	}
	if id.User != "alice" || id.Anonymous {
		t.Errorf("identity = %+v", id)
	}
	if d := time.Until(id.Expires); d < 59*time.Minute || d > time.Hour {
		t.Errorf("Expires in %v, want about 1h", d)
	}
	checks := []struct {
		persistent  bool
		obj         string
		read, write bool
	}{
		{false, "slides/a/b", true, false},
		{true, "room/1", true, true}, // write implies read
		{false, "room/1", false, false},
		{true, "other", false, false},
	}
	for _, c := range checks {
		if got := id.CanRead(c.persistent, c.obj); got != c.read {
			t.Errorf("CanRead(%v, %q) = %v, want %v", c.persistent, c.obj, got, c.read)
		}
		if got := id.CanWrite(c.persistent, c.obj); got != c.write {
			t.Errorf("CanWrite(%v, %q) = %v, want %v", c.persistent, c.obj, got, c.write)
		}
	}

	id, err = v.Verify(issue(t, Claims{User: "bob"}))
	if err != nil {
		t.Fatal(err)
	}
	if !id.Expires.IsZero() || id.CanRead(false, "x") {
		t.Errorf("token without TTL or patterns: Expires %v, CanRead %v", id.Expires, id.CanRead(false, "x"))
	}
}

func TestVerifyRefused(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name, token, code, msg string
	}{
		{"empty", "", wire.CodeUnauthorized, "token is empty"},
		{"garbage", "not-a-jwt", wire.CodeUnauthorized, "malformed"},
		{"too large", strings.Repeat("a", maxTokenBytes+1), wire.CodeUnauthorized, "the limit is"},
		{"wrong secret", sign(t, []byte("other"), jwt.MapClaims{"sub": "alice"}), wire.CodeUnauthorized, "was it signed with this server's -token-secret?"},
		{"alg none", rawToken(`{"alg":"none","typ":"JWT"}`, `{"sub":"alice"}`, ""), wire.CodeUnauthorized, `alg "none": this server accepts only HS256`},
		{"RS256", rawToken(`{"alg":"RS256","typ":"JWT"}`, `{"sub":"alice"}`, "c2ln"), wire.CodeUnauthorized, `alg "RS256"`},
		{"HS512", func() string {
			s, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims{"sub": "alice"}).SignedString(testSecret)
			return s
		}(), wire.CodeUnauthorized, `alg "HS512"`},
		{"expired", sign(t, testSecret, jwt.MapClaims{"sub": "alice", "exp": now.Add(-time.Minute).Unix()}), wire.CodeTokenExpired, "get a new token"},
		{"not yet valid", sign(t, testSecret, jwt.MapClaims{"sub": "alice", "nbf": now.Add(time.Minute).Unix()}), wire.CodeUnauthorized, "check the issuer's clock"},
		{"missing sub", sign(t, testSecret, jwt.MapClaims{"exp": now.Add(time.Minute).Unix()}), wire.CodeUnauthorized, `put the user id in "sub"`},
		{"sub not a string", sign(t, testSecret, jwt.MapClaims{"sub": 7}), wire.CodeUnauthorized, "malformed"},
		{"sub too long", sign(t, testSecret, jwt.MapClaims{"sub": strings.Repeat("u", 201)}), wire.CodeUnauthorized, "the limit is 200"},
		{"bad read pattern", sign(t, testSecret, jwt.MapClaims{"sub": "a", "rso": map[string]any{"read": []string{"a/***"}}}), wire.CodeUnauthorized, `token claim rso.read: pattern "a/***": use *`},
		{"bad write pattern", sign(t, testSecret, jwt.MapClaims{"sub": "a", "rso": map[string]any{"write": []string{""}}}), wire.CodeUnauthorized, "token claim rso.write: pattern is empty"},
	}
	v := NewVerifier(testSecret)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(tt.token)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Verify = %+v, %v; want an *Error", id, err)
			}
			if e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
				t.Errorf("error = %s %q, want %s containing %q", e.Code, e.Message, tt.code, tt.msg)
			}
		})
	}
}

func TestVerifyLeeway(t *testing.T) {
	tok := sign(t, testSecret, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(-2 * time.Second).Unix()})
	if _, err := NewVerifier(testSecret).Verify(tok); err != nil {
		t.Errorf("token expired 2s ago refused: %v", err)
	}
}

func TestFromRequest(t *testing.T) {
	tok := issue(t, Claims{User: "alice", TTL: time.Minute})
	tests := []struct {
		name, query, header, wantUser, wantErr string
	}{
		{name: "query", query: "?token=" + tok, wantUser: "alice"},
		{name: "header", header: "Bearer " + tok, wantUser: "alice"},
		{name: "lowercase scheme", header: "bearer " + tok, wantUser: "alice"},
		{name: "query wins", query: "?token=" + tok, header: "Bearer junk", wantUser: "alice"},
		{name: "missing", wantErr: "no token: pass ?token=<JWT>"},
		{name: "basic auth", header: "Basic YTpi", wantErr: `must be "Bearer <JWT>"`},
		{name: "bad token in header", header: "Bearer junk", wantErr: "malformed"},
	}
	v := NewVerifier(testSecret)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/so"+tt.query, nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			id, err := v.FromRequest(r)
			if tt.wantErr != "" {
				var e *Error
				if !errors.As(err, &e) || e.Code != wire.CodeUnauthorized || !strings.Contains(e.Message, tt.wantErr) {
					t.Errorf("FromRequest error = %v, want unauthorized containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || id.User != tt.wantUser {
				t.Errorf("FromRequest = %+v, %v; want user %q", id, err, tt.wantUser)
			}
		})
	}
}

func TestAnonymousMode(t *testing.T) {
	for _, secret := range [][]byte{nil, {}} {
		v := NewVerifier(secret)
		if !v.Anonymous() {
			t.Fatal("Anonymous() = false without a secret")
		}
		a, err := v.FromRequest(httptest.NewRequest("GET", "/so", nil))
		if err != nil {
			t.Fatal(err)
		}
		b, err := v.Verify("whatever")
		if err != nil {
			t.Fatal(err)
		}
		if !a.Anonymous || !strings.HasPrefix(a.User, "anon-") || len(a.User) != len("anon-")+8 || a.User == b.User {
			t.Errorf("anonymous users %q and %q", a.User, b.User)
		}
		if !a.CanWrite(true, "any/thing") || !a.CanRead(false, "x") || !a.Expires.IsZero() {
			t.Error("anonymous identity lacks full access or expires")
		}
	}
	if NewVerifier(testSecret).Anonymous() {
		t.Error("Anonymous() = true with a secret")
	}
	// Only the Verifier grants full access; a hand-built identity has none.
	var id *Identity
	if (&Identity{Anonymous: true}).CanWrite(false, "x") || id.CanRead(false, "x") {
		t.Error("hand-built or nil identity has access")
	}
}

func TestIssueRefuses(t *testing.T) {
	tests := []struct {
		name   string
		secret []byte
		c      Claims
	}{
		{"no secret", nil, Claims{User: "a"}},
		{"no user", testSecret, Claims{}},
		{"long user", testSecret, Claims{User: strings.Repeat("u", 201)}},
		{"negative TTL", testSecret, Claims{User: "a", TTL: -time.Second}},
		{"bad pattern", testSecret, Claims{User: "a", Write: []string{"x/***"}}},
	}
	for _, tt := range tests {
		if _, err := Issue(tt.secret, tt.c); err == nil {
			t.Errorf("%s: Issue succeeded", tt.name)
		}
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(sign(f, testSecret, jwt.MapClaims{"sub": "alice", "rso": map[string]any{"read": []string{"a/*"}}}))
	f.Add(rawToken(`{"alg":"none"}`, `{"sub":"x"}`, ""))
	f.Add(rawToken(`{"alg":"HS256"}`, `{"sub":1,"rso":{"read":"x"}}`, "AAAA"))
	f.Add("a.b.c")
	v := NewVerifier(testSecret)
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(token)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Message == "" {
				t.Fatalf("error %v is not a complete *Error", err)
			}
			return
		}
		if id.User == "" {
			t.Fatal("accepted token without user")
		}
	})
}

func TestAnonymousClientMayNameItself(t *testing.T) {
	v := NewVerifier(nil)
	id, err := v.FromRequest(httptest.NewRequest("GET", "/so?user=alice_1", nil))
	if err != nil || id.User != "alice_1" || !id.Anonymous || !id.CanWrite(true, "x") {
		t.Fatalf("got %+v %v", id, err)
	}
	if _, err := v.FromRequest(httptest.NewRequest("GET", "/so?user=a%20b", nil)); err == nil {
		t.Fatal("a name with a space was accepted")
	}
	// With a secret, ?user= means nothing: the token decides.
	if _, err := NewVerifier([]byte("0123456789abcdef")).FromRequest(httptest.NewRequest("GET", "/so?user=alice", nil)); err == nil {
		t.Fatal("?user= without a token was accepted with a secret set")
	}
}
