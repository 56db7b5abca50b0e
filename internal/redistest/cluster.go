package redistest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterTimeout bounds how long a new cluster may take to reach
// cluster_state:ok on every node.
const clusterTimeout = 20 * time.Second

// Cluster is a Redis Cluster of masters only, every node on loopback.
type Cluster struct {
	// Nodes are the masters, in the order their slot ranges were assigned.
	Nodes []*Server
	// URL is the seed list in go-redis's cluster URL form:
	// redis://h1:p1?addr=h2:p2&addr=h3:p3.
	URL string
}

// Addrs returns host:port of every node.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

func (c *Cluster) stop() {
	for _, n := range c.Nodes {
		n.Stop()
	}
}

// StartCluster starts a Redis Cluster of masters nodes (at least 3, as
// redis-cli requires) for this test and stops it when the test ends. It
// returns once every node reports cluster_state:ok and knows every other.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	c, err := startCluster(t.TempDir(), masters)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(c.stop)
	return c
}

var sharedCluster lazy[*Cluster]

// SharedCluster returns a 3-master cluster shared by every test of the test
// binary that asks for it, started on first use, under the same rules as
// Shared.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	return sharedCluster.get(t, "shared cluster", "redistest-cluster-", func(dir string) (*Cluster, func(), error) {
		c, err := startCluster(dir, 3)
		if err != nil {
			return nil, nil, err
		}
		return c, c.stop, nil
	})
}

func startCluster(dir string, masters int) (*Cluster, error) {
	bin, cli, err := clusterTools(masters)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	ok := false
	defer func() {
		if !ok {
			c.stop()
		}
	}()
	if c.Nodes, err = startClusterNodes(bin, dir, masters); err != nil {
		return nil, err
	}
	if err := createCluster(cli, c.Addrs()); err != nil {
		return nil, err
	}
	if err := waitClusterReady(c.Nodes, nil); err != nil {
		return nil, fmt.Errorf("cluster did not become ready: %w", err)
	}
	c.URL = seedURL(c.Addrs())
	ok = true
	return c, nil
}

// clusterTools finds redis-server and redis-cli, for a cluster of masters
// masters (at least 3, as redis-cli requires).
func clusterTools(masters int) (bin, cli string, err error) {
	if masters < 3 {
		return "", "", fmt.Errorf("a cluster needs at least 3 masters, got %d", masters)
	}
	if bin, err = lookPath(); err != nil {
		return "", "", err
	}
	if cli, err = exec.LookPath("redis-cli"); err != nil {
		return "", "", fmt.Errorf("redis-cli not found in PATH (%v); it comes with `apt-get install -y redis-server`", err)
	}
	return bin, cli, nil
}

// startClusterNodes starts n cluster-enabled servers, each in its own
// directory under dir. On an error the ones started are returned too, for
// the caller to stop.
func startClusterNodes(bin, dir string, n int) ([]*Server, error) {
	var nodes []*Server
	for i := 0; i < n; i++ {
		s, err := startClusterNode(bin, filepath.Join(dir, "node"+strconv.Itoa(i)))
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, s)
	}
	return nodes, nil
}

// createCluster makes masters of the servers at addrs, the slots split
// between them, with no replicas.
func createCluster(cli string, addrs []string) error {
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("redis-cli --cluster create: %w: %s", err, out)
	}
	return nil
}

// waitClusterReady waits until every node reports cluster_state:ok, every
// slot served and every other node known, and then extra (if set) returns
// nil.
func waitClusterReady(nodes []*Server, extra func() error) error {
	want := strconv.Itoa(len(nodes))
	return poll(context.Background(), clusterTimeout, 50*time.Millisecond, func() error {
		for _, n := range nodes {
			info, err := n.Do("CLUSTER", "INFO")
			if err != nil {
				return err
			}
			if Field(info, "cluster_state") != "ok" || Field(info, "cluster_known_nodes") != want ||
				Field(info, "cluster_slots_ok") != "16384" {
				return fmt.Errorf("node %s not ready: %s", n.Addr, strings.ReplaceAll(info, "\r\n", " "))
			}
		}
		if extra != nil {
			return extra()
		}
		return nil
	})
}

// seedURL is go-redis's cluster URL for seed nodes addrs:
// redis://h1:p1?addr=h2:p2&addr=h3:p3.
func seedURL(addrs []string) string {
	u := "redis://" + addrs[0]
	for i, a := range addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// startClusterNode starts one cluster-enabled server in its own directory
// (each node rewrites its nodes.conf there).
func startClusterNode(bin, dir string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster node dir: %w", err)
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort(true)
		if err != nil {
			lastErr = err
			continue
		}
		n := newServer(port, dir, []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
		})
		if lastErr = n.start(bin); lastErr == nil {
			return n, nil
		}
	}
	return nil, fmt.Errorf("starting cluster node: %w", lastErr)
}
