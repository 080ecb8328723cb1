// Package demos serves the browser demos (group chat, slideshow, auction) and runs the validation hooks
// that keep them honest. The pages are plain HTML, CSS and JavaScript embedded from web/; they talk to
// /so through the TypeScript SDK bundle (web/rso-client.js, built from sdk-ts/).
//
// Every demo object is named demo/…: demo/chat/<room> (plus the temporary demo/chat/<room>/who),
// demo/slides/<deck> and demo/auction/<id>.
package demos

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/rso-server/rso/internal/auth"
)

// Prefix is where Handler serves the demos.
const Prefix = "/demos/"

const (
	// tokenTTL is how long a demo token lasts: a working day of clicking around.
	tokenTTL = 12 * time.Hour
	// objects is what a demo token may read and write.
	objects = "demo/**"
)

// userName is what the token endpoint accepts, the same rule as the server's anonymous ?user=.
var userName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

//go:embed web
var web embed.FS

// contentPolicy keeps the pages to their own scripts, styles and socket.
const contentPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the demo pages under /demos/ and GET /demos/token?user=NAME. With a secret the
// token endpoint signs a token for NAME that may read and write demo/** for 12 hours; without one it
// answers {"token":"","anonymous":true} and the pages connect as ?user=NAME.
func Handler(secret []byte) http.Handler {
	files := loadFiles()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"token", func(w http.ResponseWriter, r *http.Request) { serveToken(w, r, secret) })
	mux.Handle("GET "+Prefix, files)
	mux.Handle(strings.TrimSuffix(Prefix, "/"), http.RedirectHandler(Prefix, http.StatusFound))
	return mux
}

// file is one embedded page, ready to serve.
type file struct {
	body  []byte
	ctype string
	etag  string
}

type fileServer map[string]*file // path under web/ → file

// loadFiles reads every embedded file once; the ETag is a hash of the content, so browsers revalidate
// cheaply and always get the version this binary carries.
func loadFiles() fileServer {
	out := fileServer{}
	_ = fs.WalkDir(web, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := web.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ctype := mime.TypeByExtension(path.Ext(p))
		if ctype == "" {
			ctype = http.DetectContentType(body)
		}
		out[strings.TrimPrefix(p, "web/")] = &file{body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	return out
}

func (fsrv fileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, Prefix)
	if name == "" || strings.HasSuffix(name, "/") {
		name += "index.html"
	}
	f, ok := fsrv[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("ETag", f.etag)
	h.Set("Cache-Control", "no-cache") // revalidate every time: the ETag makes that a 304
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", contentPolicy)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

func serveToken(w http.ResponseWriter, r *http.Request, secret []byte) {
	w.Header().Set("Cache-Control", "no-store")
	user := r.URL.Query().Get("user")
	if !userName.MatchString(user) {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error": "user must be 1 to 64 letters, digits, '-' or '_'",
		})
		return
	}
	if len(secret) == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"token": "", "anonymous": true})
		return
	}
	token, err := auth.Issue(secret, auth.Claims{User: user, Read: []string{objects}, Write: []string{objects}, TTL: tokenTTL})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": fmt.Sprintf("cannot issue a token: %v", err)})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": token})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
