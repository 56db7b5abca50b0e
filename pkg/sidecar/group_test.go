package sidecar

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

// TestGroupInterruptsInOrder: when one actor returns, the others are
// interrupted one at a time, in the order added, each after the one before
// has returned; run returns the first actor's error once all are done.
func TestGroupInterruptsInOrder(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		steps []string
	)
	step := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, s)
	}
	var g group
	first := errors.New("first")
	fail := make(chan struct{})
	g.add(func() error {
		<-fail
		return first
	}, func() { step("interrupt 0") })
	for _, name := range []string{"1", "2"} {
		stop := make(chan struct{})
		returned := make(chan struct{})
		g.add(func() error {
			defer close(returned)
			<-stop
			step("return " + name)
			return errors.New("later " + name)
		}, func() {
			step("interrupt " + name)
			close(stop)
			<-returned // a blocking interrupt, as GracefulStop is
		})
	}
	close(fail)
	if err := g.run(); err != first {
		t.Errorf("run: %v, want the first actor's error", err)
	}
	want := []string{"interrupt 0", "interrupt 1", "return 1", "interrupt 2", "return 2"}
	if !slices.Equal(steps, want) {
		t.Errorf("steps %q, want %q", steps, want)
	}
}

func TestGroupEmpty(t *testing.T) {
	t.Parallel()
	var g group
	if err := g.run(); err != nil {
		t.Errorf("empty group: %v", err)
	}
}
