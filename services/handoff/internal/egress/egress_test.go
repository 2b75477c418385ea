package egress

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPublic(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1", false},
		{"127.255.0.9", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"172.31.255.255", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"100.127.255.254", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"255.255.255.255", false},
		{"240.0.0.1", false},
		{"192.0.2.1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:169.254.169.254", false},
		{"::127.0.0.1", false},
		{"fe80::1", false},
		{"fe80::1%eth0", false},
		{"fc00::1", false},
		{"fd12:3456::1", false},
		{"fec0::1", false},
		{"224.0.0.1", false},
		{"ff02::1", false},
		{"64:ff9b::a9fe:a9fe", false}, // NAT64 of 169.254.169.254
		{"64:ff9b:1::808:808", false},
		{"2002:7f00:1::", false},
		{"2001:db8::1", false},
		{"8.8.8.8", true},
		{"1.1.1.1", true},
		{"100.63.255.255", true},
		{"172.32.0.1", true},
		{"::ffff:8.8.8.8", true},
		{"2606:4700::1111", true},
		{"64:ff9b::808:808", true}, // NAT64 of 8.8.8.8
	} {
		t.Run(tc.addr, func(t *testing.T) {
			if got := Public(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Fatalf("Public(%s) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
	if Public(netip.Addr{}) {
		t.Fatal("the zero Addr is public")
	}
}

func TestPublicHost(t *testing.T) {
	for _, tc := range []struct {
		host string
		want bool
	}{
		{"localhost", false},
		{"LocalHost.", false},
		{"api.localhost", false},
		{"169.254.169.254", false},
		{"10.0.0.1", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"fe80::1%eth0", false},
		{"2130706433", false}, // 127.0.0.1 as one number
		{"127.1", false},
		{"0x7f.1", false},
		{"0x7f000001", false},
		{"", false},
		{"8.8.8.8", true},
		{"2606:4700::1111", true},
		{"crm.example.com", true},
		{"hooks.example.cafe", true},
		{"1e100.net", true},
		// Names are not resolved: the dial-time guard decides them.
		{"metadata.google.internal", true},
	} {
		t.Run(tc.host, func(t *testing.T) {
			if got := PublicHost(tc.host); got != tc.want {
				t.Fatalf("PublicHost(%q) = %v, want %v", tc.host, got, tc.want)
			}
		})
	}
}

func ok(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }

func TestClientRefusesNonPublicAddresses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(ok))
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	// localhost is a name: it is refused on the address it resolves to.
	for _, url := range []string{srv.URL, "http://localhost:" + port + "/"} {
		resp, err := NewClient(5*time.Second, false).Post(url, "application/json", strings.NewReader("{}"))
		if err == nil {
			_ = resp.Body.Close()
			t.Fatalf("POST %s: connected to a loopback server", url)
		}
		if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "not allowed") {
			t.Fatalf("POST %s: error = %v, want %v", url, err, ErrNotAllowed)
		}
	}

	resp, err := NewClient(5*time.Second, true).Post(srv.URL, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatalf("with private networks allowed: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status = %d", resp.StatusCode)
	}
}

func TestClientChecksRedirects(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(ok))
	t.Cleanup(target.Close)
	_, port, err := net.SplitHostPort(target.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	// 127.0.0.2 stands in for an internal address behind an allowed one;
	// the listener is on 127.0.0.1, so a dial that got through would fail
	// with "connection refused" instead.
	origin := httptest.NewServer(http.RedirectHandler("http://127.0.0.2:"+port+"/", http.StatusTemporaryRedirect))
	t.Cleanup(origin.Close)
	onlyFirstLoopback := func(a netip.Addr) bool { return a == netip.MustParseAddr("127.0.0.1") }

	resp, err := newClient(5*time.Second, onlyFirstLoopback).Post(origin.URL, "application/json", strings.NewReader("{}"))
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("followed a redirect to a refused address")
	}
	if !errors.Is(err, ErrNotAllowed) {
		t.Fatalf("error = %v, want %v", err, ErrNotAllowed)
	}
}

func TestClientIgnoresProxyEnvironment(t *testing.T) {
	t.Setenv("HTTP_PROXY", "http://proxy.invalid:3128")
	t.Setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
	tr := NewClient(time.Second, false).Transport.(*http.Transport)
	if tr.Proxy != nil {
		t.Fatal("webhook client uses a proxy")
	}
}
