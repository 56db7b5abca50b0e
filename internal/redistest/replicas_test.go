package redistest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestReplicatedCluster: each replica follows its own master, and killing
// a master promotes its replica.
func TestReplicatedCluster(t *testing.T) {
	t.Parallel()
	c := StartReplicatedCluster(t, 3)
	if len(c.Nodes) != 6 {
		t.Fatalf("%d nodes, want 6", len(c.Nodes))
	}
	for i, r := range c.Replicas {
		info, err := r.Do("INFO", "replication")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := Field(info, "master_port"), fmt.Sprint(c.Masters[i].port); got != want {
			t.Errorf("replica %d follows port %s, want %s", i, got, want)
		}
	}
	c.Masters[0].Stop()
	err := poll(context.Background(), 30*time.Second, 50*time.Millisecond, func() error {
		role, err := c.Replicas[0].Role()
		if err != nil || role != "master" {
			return fmt.Errorf("replica 0 role %q (%v)", role, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
