package main

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Identical anonymous reads arriving while one is answered share its answer; revalidations and
// signed-in reads never do.
func TestIdenticalAnonymousReadsShareOneCall(t *testing.T) {
	var calls atomic.Int32
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		time.Sleep(300 * time.Millisecond) // long enough for the others to arrive meanwhile
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Own", r.Header.Get("X-Caller"))
		_, _ = w.Write([]byte(`{"movies":[]}`))
	})
	handler := httpCache(slow, 5)
	run := func(n int, decorate func(*http.Request)) []*httptest.ResponseRecorder {
		recorders := make([]*httptest.ResponseRecorder, n)
		var wg sync.WaitGroup
		for i := range recorders {
			recorders[i] = httptest.NewRecorder()
			wg.Add(1)
			go func(rec *httptest.ResponseRecorder) {
				defer wg.Done()
				r := httptest.NewRequest(http.MethodGet, "/v1/movies?pageSize=50", nil)
				r.Header.Set("X-Caller", "someone")
				decorate(r)
				handler.ServeHTTP(rec, r)
			}(recorders[i])
		}
		wg.Wait()
		return recorders
	}

	for _, rec := range run(10, func(*http.Request) {}) {
		if rec.Code != http.StatusOK || rec.Body.String() != `{"movies":[]}` || rec.Header().Get("ETag") == "" {
			t.Fatalf("a shared answer: %d %q %v", rec.Code, rec.Body.String(), rec.Header())
		}
		if rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("the content type travels with a shared answer: %v", rec.Header())
		}
	}
	if got := calls.Swap(0); got != 1 {
		t.Fatalf("10 identical anonymous reads at once made %d calls, want 1", got)
	}

	run(4, func(r *http.Request) { r.Header.Set("If-None-Match", `"x"`) })
	run(4, func(r *http.Request) { r.Header.Set("Cache-Control", "no-cache") })
	run(4, func(r *http.Request) { r.Header.Set("Authorization", "Bearer t") })
	if got := calls.Load(); got != 12 {
		t.Fatalf("revalidations, no-cache and signed-in reads made %d calls, want 12 (never shared)", got)
	}
}
