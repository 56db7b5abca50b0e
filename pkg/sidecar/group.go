package sidecar

// group runs actors the way github.com/oklog/run does: each actor is an
// execute function that runs until it is done, and an interrupt function
// that makes it return. When the first execute returns, every actor is
// interrupted, and run returns once all have returned.
//
// It is our own, in a few lines, for the one guarantee shutdown rests on
// and oklog/run does not document: interrupts are called one at a time, in
// the order the actors were added, each once the previous has returned. So
// an interrupt that blocks (GracefulStop) holds back the ones after it:
// health turns NOT_SERVING before in-flight calls are waited for, and the
// HTTP listener (answering /readyz 503) stays up until they are done.
type group struct {
	actors []actor
}

type actor struct {
	execute   func() error
	interrupt func()
}

// add appends an actor; interrupt must make execute return, and may be
// called before execute has started.
func (g *group) add(execute func() error, interrupt func()) {
	g.actors = append(g.actors, actor{execute, interrupt})
}

// run starts every actor and returns the error of the first to return,
// after interrupting the others in order and waiting for them all.
func (g *group) run() error {
	if len(g.actors) == 0 {
		return nil
	}
	errs := make(chan error, len(g.actors))
	for _, a := range g.actors {
		go func() { errs <- a.execute() }()
	}
	err := <-errs
	for _, a := range g.actors {
		a.interrupt()
	}
	for range len(g.actors) - 1 {
		<-errs
	}
	return err
}
