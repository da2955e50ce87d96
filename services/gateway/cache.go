package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
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
//
// Identical anonymous reads that arrive while one of them is being answered share that answer
// (coalescing, not caching: nothing is kept once the call ends). A crowd reading the same page
// (25 clients reading /v1/movies as fast as they are answered) then costs the service one call at
// a time instead of 25, which it would shed past its capacity. Only a request that asks nothing
// of freshness joins: one with If-None-Match (a browser revalidating what it holds, e.g. the web
// screen refetching after a change notice) or Cache-Control/Pragma no-cache or max-age=0 always
// makes its own call, so it never gets an answer that was started before the change it was told
// about. A shared answer that is not a 200 is not shared: each waiter then makes its own call.
func httpCache(next http.Handler, maxAge int) http.Handler {
	flights := &coalescer{inFlight: map[string]*flight{}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch cacheClass(r) {
		case notCacheable:
			next.ServeHTTP(w, r)
		case private:
			w.Header().Set("Cache-Control", "private, no-store")
			next.ServeHTTP(w, r)
		case public:
			if !mayShare(r) {
				buf := &bufferedResponse{header: w.Header()}
				next.ServeHTTP(buf, r)
				buf.send(w, r, maxAge)
				return
			}
			key := r.URL.RequestURI() + "\x00" + r.Header.Get("Accept")
			shared := flights.do(r, key, func() *bufferedResponse {
				buf := &bufferedResponse{header: http.Header{}}
				next.ServeHTTP(buf, r)
				return buf
			})
			if shared == nil || (shared.status != 0 && shared.status != http.StatusOK) {
				if shared == nil || !shared.ownedBy(r) {
					buf := &bufferedResponse{header: w.Header()}
					next.ServeHTTP(buf, r)
					buf.send(w, r, maxAge)
					return
				}
			}
			for name, values := range shared.header {
				if name == "Content-Type" || strings.HasPrefix(name, "Grpc-Metadata-Content-Type") {
					w.Header()[name] = values
				}
			}
			if shared.ownedBy(r) { // the caller's own answer: every header it set is its own
				for name, values := range shared.header {
					w.Header()[name] = values
				}
			}
			shared.send(w, r, maxAge)
		}
	})
}

// mayShare: an anonymous read that asks nothing of freshness (see httpCache).
func mayShare(r *http.Request) bool {
	if r.Header.Get("If-None-Match") != "" {
		return false
	}
	for _, name := range []string{"Cache-Control", "Pragma"} {
		for _, value := range r.Header.Values(name) {
			v := strings.ToLower(value)
			if strings.Contains(v, "no-cache") || strings.Contains(v, "no-store") || strings.Contains(v, "max-age=0") {
				return false
			}
		}
	}
	return true
}

// flight is one call being answered; waiters get its buffered answer when done is closed.
type flight struct {
	done chan struct{}
	resp *bufferedResponse
}

type coalescer struct {
	mu       sync.Mutex
	inFlight map[string]*flight
}

// do runs call for the first request of `key`, and hands its answer to the requests of the same
// key that arrive meanwhile; a waiter whose own request ends first stops waiting (nil).
func (c *coalescer) do(r *http.Request, key string, call func() *bufferedResponse) *bufferedResponse {
	c.mu.Lock()
	if f, ok := c.inFlight[key]; ok {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.resp
		case <-r.Context().Done():
			return nil
		}
	}
	f := &flight{done: make(chan struct{})}
	c.inFlight[key] = f
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.inFlight, key)
		c.mu.Unlock()
		close(f.done)
	}()
	f.resp = call()
	f.resp.owner = r
	return f.resp
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
	owner  *http.Request // the request whose call made it (coalescing)
}

func (b *bufferedResponse) ownedBy(r *http.Request) bool { return b.owner == r }

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
