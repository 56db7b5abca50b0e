package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sentinelTimeout bounds how long the sentinels may take to find the replica
// and each other.
const sentinelTimeout = 20 * time.Second

// Sentinel is a master, one replica and three sentinels monitoring them
// under MasterName, all on loopback.
type Sentinel struct {
	// MasterName is the name the sentinels monitor the master under.
	MasterName string
	// Master and Replica are the data servers as started; after a failover
	// their roles are swapped.
	Master, Replica *Server
	// Sentinels are the three sentinel processes.
	Sentinels []*Server
}

// Addrs returns host:port of every sentinel.
func (s *Sentinel) Addrs() []string {
	addrs := make([]string, len(s.Sentinels))
	for i, n := range s.Sentinels {
		addrs[i] = n.Addr
	}
	return addrs
}

// MasterAddr asks the first answering sentinel for the current master.
func (s *Sentinel) MasterAddr() (string, error) {
	var lastErr error
	for _, n := range s.Sentinels {
		reply, err := n.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", s.MasterName)
		if err != nil {
			lastErr = err
			continue
		}
		hp := strings.Split(reply, "\n")
		if len(hp) == 2 {
			return hp[0] + ":" + hp[1], nil
		}
		lastErr = fmt.Errorf("unexpected reply %q", reply)
	}
	return "", fmt.Errorf("redistest: no sentinel knows the master: %w", lastErr)
}

// StartSentinel starts a master, a replica of it and three sentinels (quorum
// 2, down-after 1 s) for this test, stops them when it ends, and returns once
// every sentinel knows the replica and the other two sentinels.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	s, err := startSentinel(t.TempDir())
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(s.stop)
	return s
}

func startSentinel(dir string) (g *Sentinel, err error) {
	g = &Sentinel{MasterName: "floodgate-test"}
	defer func() {
		if err != nil {
			g.stop()
		}
	}()
	sub := func(name string) (string, error) {
		d := filepath.Join(dir, name)
		return d, os.MkdirAll(d, 0o755)
	}
	d, err := sub("master")
	if err != nil {
		return nil, err
	}
	if g.Master, err = startServer(d, nil); err != nil {
		return nil, err
	}
	if d, err = sub("replica"); err != nil {
		return nil, err
	}
	masterPort := strconv.Itoa(g.Master.port)
	if g.Replica, err = startServer(d, []string{"--replicaof", "127.0.0.1", masterPort}); err != nil {
		return nil, err
	}
	bin, err := lookPath()
	if err != nil {
		return nil, err
	}
	for i := 0; i < 3; i++ {
		if d, err = sub("sentinel" + strconv.Itoa(i)); err != nil {
			return nil, err
		}
		conf := filepath.Join(d, "sentinel.conf")
		text := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]s 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n", g.MasterName, masterPort)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return nil, err
		}
		var n *Server
		for attempt := 0; attempt < 5; attempt++ {
			port, perr := freePort(false)
			if perr != nil {
				err = perr
				continue
			}
			n = newServer(port, d, nil)
			n.sentinelConf = conf
			if err = n.start(bin); err == nil {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("starting sentinel: %w", err)
		}
		g.Sentinels = append(g.Sentinels, n)
	}
	err = poll(context.Background(), sentinelTimeout, 100*time.Millisecond, func() error {
		info, err := g.Replica.Do("INFO", "replication")
		if err != nil {
			return err
		}
		if Field(info, "master_link_status") != "up" {
			return fmt.Errorf("replica link not up")
		}
		for _, n := range g.Sentinels {
			reply, err := n.Do("SENTINEL", "MASTER", g.MasterName)
			if err != nil {
				return err
			}
			fields := pairs(reply)
			if fields["num-slaves"] != "1" || fields["num-other-sentinels"] != "2" {
				return fmt.Errorf("sentinel %s: %s replicas, %s other sentinels", n.Addr, fields["num-slaves"], fields["num-other-sentinels"])
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sentinels did not become ready: %w", err)
	}
	return g, nil
}

func (g *Sentinel) stop() {
	for _, n := range g.Sentinels {
		n.Stop()
	}
	if g.Replica != nil {
		g.Replica.Stop()
	}
	if g.Master != nil {
		g.Master.Stop()
	}
}

// pairs reads a flat name/value list (one element per line) into a map.
func pairs(text string) map[string]string {
	parts := strings.Split(text, "\n")
	m := make(map[string]string, len(parts)/2)
	for i := 0; i+1 < len(parts); i += 2 {
		m[parts[i]] = parts[i+1]
	}
	return m
}
