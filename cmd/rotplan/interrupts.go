package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
)

// interrupts decides what SIGINT and SIGTERM do. By default a signal ends
// rotplan at once, exit 1, with a line on stderr: reading and compiling a
// plan cannot be cancelled halfway (a plan of 100,000 steps takes minutes),
// and until a command changes something there is nothing to finish.
// While a command is in a phase that must finish what it started (a run's
// walk, journal and state directory; a preview logged in to Vault, whose
// token it revokes), the first signal cancels its context instead, and the
// command winds down and reports; a second one ends rotplan at once, as a
// kill would, which resume is made for.
type interrupts struct {
	cancel context.CancelFunc
	stderr io.Writer
	exit   func(code int)

	mu sync.Mutex
	// windingDown counts the phases under way that wind down on ctx.
	windingDown int
	// cancelled: a signal cancelled the context already.
	cancelled bool
}

// interruptsKey finds the *interrupts in a command's context.
type interruptsKey struct{}

// catchInterrupts returns the context commands run in and the
// interrupts that cancel it; its watch must be given the signals.
func catchInterrupts(stderr io.Writer, exit func(int)) (context.Context, *interrupts) {
	ctx, cancel := context.WithCancel(context.Background())
	in := &interrupts{cancel: cancel, stderr: stderr, exit: exit}
	return context.WithValue(ctx, interruptsKey{}, in), in
}

// watch handles the signals as they come, until sigs is closed.
func (in *interrupts) watch(sigs <-chan os.Signal) {
	for sig := range sigs {
		in.mu.Lock()
		cancel := in.windingDown > 0 && !in.cancelled
		again := in.cancelled
		in.cancelled = in.cancelled || cancel
		in.mu.Unlock()
		switch {
		case cancel:
			in.cancel()
		case again:
			fmt.Fprintf(in.stderr, "rotplan: stopped at once by a second %s: what was under way was cut short; rotplan resume finishes a run.\n", signalName(sig))
			in.exit(exitFailed)
		default:
			fmt.Fprintf(in.stderr, "rotplan: stopped by %s.\n", signalName(sig))
			in.exit(exitFailed)
		}
	}
}

// windDown marks the start of a phase that finishes what it started when
// ctx is cancelled: until end is called, the first SIGINT or SIGTERM
// cancels ctx rather than ending rotplan. A context that did not come from
// catchInterrupts (a test's) is left alone.
func windDown(ctx context.Context) (end func()) {
	in, ok := ctx.Value(interruptsKey{}).(*interrupts)
	if !ok {
		return func() {}
	}
	in.mu.Lock()
	in.windingDown++
	in.mu.Unlock()
	return func() {
		in.mu.Lock()
		in.windingDown--
		in.mu.Unlock()
	}
}

// signalName is how a signal is usually written: SIGINT, SIGTERM.
func signalName(sig os.Signal) string {
	switch sig {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	}
	return sig.String()
}
