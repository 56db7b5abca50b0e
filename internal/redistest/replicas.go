package redistest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// ReplicatedCluster is a Redis Cluster of masters with one replica each,
// for failover tests.
type ReplicatedCluster struct {
	// Cluster holds every node (masters first, in slot order, then the
	// replicas) and the seed URL.
	Cluster
	// Masters and Replicas are the nodes as started: Replicas[i]
	// replicates Masters[i]. A failover swaps their roles.
	Masters, Replicas []*Server
}

// StartReplicatedCluster starts masters masters (at least 3) and a replica
// for each, for this test, and stops them when it ends. It returns once
// every node reports cluster_state:ok and every replica its link to its
// master up, so that killing a master is followed by a failover
// (cluster-node-timeout 2000).
func StartReplicatedCluster(t testing.TB, masters int) *ReplicatedCluster {
	t.Helper()
	c, err := startReplicatedCluster(t.TempDir(), masters)
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	t.Cleanup(c.stop)
	return c
}

func startReplicatedCluster(dir string, masters int) (*ReplicatedCluster, error) {
	bin, cli, err := clusterTools(masters)
	if err != nil {
		return nil, err
	}
	c := &ReplicatedCluster{}
	ok := false
	defer func() {
		if !ok {
			c.stop()
		}
	}()
	if c.Nodes, err = startClusterNodes(bin, dir, 2*masters); err != nil {
		return nil, err
	}
	c.Masters, c.Replicas = c.Nodes[:masters], c.Nodes[masters:]
	// Masters first, then no replicas: each replica is attached to its
	// master by hand below, so that Replicas[i] follows Masters[i]
	// (redis-cli's own pairing would not say which is whose).
	if err := createCluster(cli, c.addrsOf(c.Masters)); err != nil {
		return nil, err
	}
	for i, r := range c.Replicas {
		m := c.Masters[i]
		id, err := m.Do("CLUSTER", "MYID")
		if err != nil {
			return nil, fmt.Errorf("CLUSTER MYID on %s: %w", m.Addr, err)
		}
		if _, err := r.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(m.port)); err != nil {
			return nil, fmt.Errorf("CLUSTER MEET from %s: %w", r.Addr, err)
		}
		// The replica must know the master's node ID before it can follow it.
		err = poll(context.Background(), clusterTimeout, 50*time.Millisecond, func() error {
			_, err := r.Do("CLUSTER", "REPLICATE", id)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("CLUSTER REPLICATE on %s: %w", r.Addr, err)
		}
	}
	err = waitClusterReady(c.Nodes, func() error {
		for _, r := range c.Replicas {
			info, err := r.Do("INFO", "replication")
			if err != nil {
				return err
			}
			if Field(info, "master_link_status") != "up" {
				return fmt.Errorf("replica %s: link to its master not up yet", r.Addr)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replicated cluster did not become ready: %w", err)
	}
	c.URL = seedURL(c.addrsOf(c.Masters))
	ok = true
	return c, nil
}

func (c *ReplicatedCluster) addrsOf(nodes []*Server) []string {
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Role returns a node's role as INFO replication reports it ("master" or
// "slave"), or the error of asking.
func (s *Server) Role() (string, error) {
	info, err := s.Do("INFO", "replication")
	if err != nil {
		return "", err
	}
	return Field(info, "role"), nil
}
