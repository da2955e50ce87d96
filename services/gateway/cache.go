package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
)

// HTTP caching of the public reads (the board and the catalog) for anonymous callers.
//
// An answer of GET /v1/board, /v1/board/movies/…, /v1/movies and /v1/movies/… to a request without
// an Authorization header is the same for everyone, so it carries
//
//	ETag: "<sha-256 of the body, 128 bits>"   Cache-Control: public, max-age=N   Vary: Authorization
//
// and a request whose If-None-Match names that tag gets 304 Not Modified without the body. The
// tag is computed here, from the JSON the client would receive, so it is right for every service
// behind the gateway (a body that differs in any byte has another tag) and needs nothing from them;
// the upstream call is still made (304 saves the transfer, max-age saves the request). max-age is
// short (GATEWAY_PUBLIC_MAX_AGE_S, 5 s by default): the board changes with every reservation, and a
// few seconds of staleness is what a cache in front of it may add.
//
// Never cached: an authenticated request (its answer may depend on the caller, and a shared cache
// must not keep it: `Cache-Control: private, no-store`), the customer's own reservations
// (/v1/board/reservations), any other method, and every answer but 200.
func httpCache(next http.Handler, maxAge int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch cacheClass(r) {
		case notCacheable:
			next.ServeHTTP(w, r)
		case private:
			w.Header().Set("Cache-Control", "private, no-store")
			next.ServeHTTP(w, r)
		case public:
			buf := &bufferedResponse{header: w.Header()}
			next.ServeHTTP(buf, r)
			buf.send(w, r, maxAge)
		}
	})
}

type cacheability int

const (
	notCacheable cacheability = iota
	private
	public
)

func cacheClass(r *http.Request) cacheability {
	if r.Method != http.MethodGet {
		return notCacheable
	}
	path := r.URL.Path
	if path == "/v1/board/reservations" || strings.HasPrefix(path, "/v1/board/reservations/") {
		return private
	}
	if path != "/v1/board" && !strings.HasPrefix(path, "/v1/board/movies/") &&
		path != "/v1/movies" && !strings.HasPrefix(path, "/v1/movies/") {
		return notCacheable
	}
	if r.Header.Get("Authorization") != "" {
		return private
	}
	return public
}

// bufferedResponse keeps the status and body of a public read until the tag is known; headers go
// straight to the real writer's map (grpc-gateway sets Content-Type and the like on it).
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) send(w http.ResponseWriter, r *http.Request, maxAge int) {
	status := b.status
	if status == 0 {
		status = http.StatusOK
	}
	if status == http.StatusOK {
		sum := sha256.Sum256(b.body.Bytes())
		tag := `"` + hex.EncodeToString(sum[:16]) + `"`
		h := w.Header()
		h.Set("ETag", tag)
		if maxAge > 0 {
			h.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", maxAge))
		} else {
			h.Set("Cache-Control", "public, no-cache")
		}
		h.Add("Vary", "Authorization")
		if matches(r.Header.Values("If-None-Match"), tag) {
			h.Del("Content-Length")
			h.Del("Content-Type")
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	w.WriteHeader(status)
	_, _ = w.Write(b.body.Bytes())
}

// matches applies If-None-Match's weak comparison (RFC 9110 13.1.2): any listed tag, W/ or not,
// or "*".
func matches(headers []string, tag string) bool {
	for _, header := range headers {
		for _, candidate := range strings.Split(header, ",") {
			candidate = strings.TrimSpace(candidate)
			if candidate == "*" || strings.TrimPrefix(candidate, "W/") == tag {
				return true
			}
		}
	}
	return false
}
