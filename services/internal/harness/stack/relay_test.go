package stack

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// The webhook address answers for whichever pipeline holds it, 503 while none does, and is handed over
// again after a crash (release) or a stop (the server shutting its listener).
func TestRelayHandsTheAddressFromPipelineToPipeline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := newRelay(ln)
	t.Cleanup(func() { _ = r.Close() })
	idle := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "not running", http.StatusServiceUnavailable)
	})}
	go func() { _ = idle.Serve(r.idle) }()
	t.Cleanup(func() { _ = idle.Close() })
	url := "http://" + ln.Addr().String() + "/"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func() string {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	serve := func(name string) *http.Server {
		t.Helper()
		l, err := r.Listen(ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) })}
		go func() { _ = srv.Serve(l) }()
		return srv
	}

	if got := get(); got != "503 not running\n" {
		t.Fatalf("before any pipeline: %q", got)
	}
	first := serve("first")
	if got := get(); got != "200 first" {
		t.Fatalf("first pipeline: %q", got)
	}
	if _, err := r.Listen(ln.Addr().String()); err == nil {
		t.Fatal("a second pc-ingest got the address while the first holds it")
	}
	if _, err := r.Listen("127.0.0.1:1"); err == nil {
		t.Fatal("a listener for another address was handed out")
	}
	r.release() // a crash
	if got := get(); got != "503 not running\n" {
		t.Fatalf("after the crash: %q", got)
	}
	_ = first.Close()
	second := serve("second")
	if got := get(); got != "200 second" {
		t.Fatalf("second pipeline: %q", got)
	}
	if err := second.Shutdown(context.Background()); err != nil { // an orderly stop
		t.Fatal(err)
	}
	if got := get(); got != "503 not running\n" {
		t.Fatalf("after the stop: %q", got)
	}
	serve("third")
	if got := get(); got != "200 third" {
		t.Fatalf("third pipeline: %q", got)
	}
}
