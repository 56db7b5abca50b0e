package redistest

import (
	"strings"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

func TestServerStopStart(t *testing.T) {
	t.Parallel()
	s := StartServer(t)
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Stop()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("PING after Stop: got no error")
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// Nothing is persisted: a restarted server is empty.
	got, err := s.Do("EXISTS", "k")
	if err != nil || got != "0" {
		t.Fatalf("EXISTS k after restart = %q, %v; want 0", got, err)
	}
	if err := s.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got, err := s.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING after Restart = %q, %v", got, err)
	}
}

func TestShared(t *testing.T) {
	t.Parallel()
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatal("Shared returned two servers")
	}
	if got, err := a.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING = %q, %v", got, err)
	}
	if !strings.HasPrefix(a.URL, "redis://127.0.0.1:") {
		t.Fatalf("URL = %q", a.URL)
	}
}

func TestCluster(t *testing.T) {
	t.Parallel()
	c := SharedCluster(t)
	if len(c.Addrs()) != 3 {
		t.Fatalf("Addrs = %v, want 3", c.Addrs())
	}
	for _, n := range c.Nodes {
		if n.port > 55535 {
			t.Errorf("node port %d > 55535", n.port)
		}
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		if got := Field(info, "cluster_state"); got != "ok" {
			t.Errorf("%s cluster_state = %q", n.Addr, got)
		}
	}
	if want := "redis://" + c.Nodes[0].Addr + "?addr=" + c.Nodes[1].Addr + "&addr=" + c.Nodes[2].Addr; c.URL != want {
		t.Errorf("URL = %q, want %q", c.URL, want)
	}
}

func TestSentinel(t *testing.T) {
	t.Parallel()
	g := StartSentinel(t)
	got, err := g.MasterAddr()
	if err != nil {
		t.Fatal(err)
	}
	if got != g.Master.Addr {
		t.Fatalf("MasterAddr = %q, want %q", got, g.Master.Addr)
	}
}

func TestTLSServer(t *testing.T) {
	t.Parallel()
	s := StartTLSServer(t)
	if !strings.HasPrefix(s.URL, "rediss://127.0.0.1:") {
		t.Errorf("URL = %q", s.URL)
	}
	if got, err := s.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING over TLS = %q, %v", got, err)
	}
	// Plain text is refused: the port speaks only TLS.
	if got, err := Do(s.Addr, "PING"); err == nil && got == "PONG" {
		t.Error("plain-text PING answered")
	}
}
