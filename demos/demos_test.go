package demos

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rso-server/rso/internal/auth"
)

func get(t *testing.T, h http.Handler, url string, header ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandlerServesThePages(t *testing.T) {
	h := Handler(nil)
	for _, tc := range []struct {
		url, ctype, contains string
	}{
		{"/demos/", "text/html", `href="chat.html"`},
		{"/demos/index.html", "text/html", `href="slides.html"`},
		{"/demos/chat.html", "text/html", `src="chat.js"`},
		{"/demos/slides.html", "text/html", `src="slides.js"`},
		{"/demos/auction.html", "text/html", `src="auction.js"`},
		{"/demos/style.css", "text/css", "--accent"},
		{"/demos/chat.js", "text/javascript", "./common.js"},
		{"/demos/common.js", "text/javascript", "./rso-client.js"},
	} {
		resp := get(t, h, tc.url)
		b := body(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: status %d", tc.url, resp.StatusCode)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.ctype) {
			t.Errorf("%s: Content-Type %q, want %s", tc.url, ct, tc.ctype)
		}
		if !strings.Contains(b, tc.contains) {
			t.Errorf("%s does not contain %q", tc.url, tc.contains)
		}
		if resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: no Content-Security-Policy", tc.url)
		}
	}

	// The ETag is the content's: a browser revalidates with it and gets 304.
	first := get(t, h, "/demos/style.css")
	etag := first.Header.Get("ETag")
	if etag == "" || first.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("style.css: ETag %q Cache-Control %q", etag, first.Header.Get("Cache-Control"))
	}
	if resp := get(t, h, "/demos/style.css", "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation: status %d, want 304", resp.StatusCode)
	}

	if resp := get(t, h, "/demos/missing.html"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing file: status %d", resp.StatusCode)
	}
	if resp := get(t, h, "/demos"); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/demos/" {
		t.Errorf("/demos: status %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestTokenEndpoint(t *testing.T) {
	var anon map[string]any
	resp := get(t, Handler(nil), "/demos/token?user=alice")
	if err := json.Unmarshal([]byte(body(t, resp)), &anon); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("anonymous: status %d %v", resp.StatusCode, err)
	}
	if anon["token"] != "" || anon["anonymous"] != true {
		t.Fatalf("anonymous answer %v", anon)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}

	secret := []byte("0123456789abcdef0123")
	h := Handler(secret)
	var out struct {
		Token string `json:"token"`
	}
	resp = get(t, h, "/demos/token?user=bob_2")
	if err := json.Unmarshal([]byte(body(t, resp)), &out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("with a secret: status %d %v", resp.StatusCode, err)
	}
	id, err := auth.NewVerifier(secret).Verify(out.Token)
	if err != nil {
		t.Fatalf("the token does not verify: %v", err)
	}
	if id.User != "bob_2" || !id.CanWrite(true, "demo/chat/lobby") || !id.CanWrite(false, "demo/chat/lobby/who") || id.CanRead(true, "room/1") {
		t.Fatalf("token grants the wrong things: %+v", id)
	}
	if left := time.Until(id.Expires); left < 11*time.Hour || left > 13*time.Hour {
		t.Fatalf("token expires in %s, want 12h", left)
	}

	for _, bad := range []string{"", "a%20b", strings.Repeat("x", 65), "%C3%A9"} {
		if resp := get(t, h, "/demos/token?user="+bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("user %q: status %d, want 400", bad, resp.StatusCode)
		}
	}
}
