package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain runs rotplan's main instead of the tests when
// ROTPLAN_TEST_MAIN=1, so that a test can start rotplan as a process (and
// signal it) without building it.
func TestMain(m *testing.M) {
	if os.Getenv("ROTPLAN_TEST_MAIN") == "1" {
		main()
	}
	os.Exit(m.Run())
}

// hangDetector is how long a test waits for rotplan to stop: far longer
// than stopping takes, it only tells a hang from a stop.
const hangDetector = 60 * time.Second

// TestEveryCommandStopsOnASignal starts each command that reads a plan on
// one that never ends (a FIFO nobody finishes writing) and signals it once
// rotplan is reading: it stops with exit 1 and says why. (Before, every
// command caught the signal and only run and resume heeded it.)
func TestEveryCommandStopsOnASignal(t *testing.T) {
	tests := []struct {
		name string
		args []string
		sig  syscall.Signal
	}{
		{"validate SIGTERM", []string{"validate"}, syscall.SIGTERM},
		{"validate SIGINT", []string{"validate"}, syscall.SIGINT},
		{"plan", []string{"plan"}, syscall.SIGTERM},
		{"plan -json", []string{"plan", "-json"}, syscall.SIGTERM},
		{"run", []string{"run"}, syscall.SIGTERM},
		{"run -dry-run", []string{"run", "-dry-run"}, syscall.SIGINT},
		{"resume", []string{"resume"}, syscall.SIGTERM},
		{"graph", []string{"graph"}, syscall.SIGTERM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			plan := filepath.Join(dir, "p.hcl")
			if err := syscall.Mkfifo(plan, 0o600); err != nil {
				t.Skipf("cannot make a FIFO to stand for a plan that takes forever to read: %v", err)
			}
			args := append(append([]string{}, tt.args...), plan)
			if tt.args[0] == "run" || tt.args[0] == "resume" {
				args = append(append([]string{}, tt.args...), "-state-dir", filepath.Join(dir, "state"), plan)
			}
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), "ROTPLAN_TEST_MAIN=1")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill() })
			// Opening the FIFO to write returns once rotplan has opened it
			// to read: it has set up its signals then, and blocks reading.
			w := openFIFOWriter(t, plan)
			defer w.Close()
			if err := cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			err := waitFor(t, cmd)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != exitFailed {
				t.Errorf("rotplan %s ended with %v, want exit %d", tt.name, err, exitFailed)
			}
			if want := "rotplan: stopped by " + signalName(tt.sig) + "."; !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
			}
		})
	}
}

// openFIFOWriter opens the FIFO at path for writing, which waits for a
// reader.
func openFIFOWriter(t *testing.T, path string) *os.File {
	t.Helper()
	type result struct {
		f   *os.File
		err error
	}
	// The goroutine reports through the channel, never through t: it may
	// return after the test has ended, when t must not be used.
	opened := make(chan result, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		opened <- result{f, err}
	}()
	select {
	case r := <-opened:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r.f
	case <-time.After(hangDetector):
		t.Fatalf("rotplan never opened %s to read it", path)
		return nil
	}
}

// waitFor waits for cmd to end, and fails the test when it does not.
func waitFor(t *testing.T, cmd *exec.Cmd) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(hangDetector):
		cmd.Process.Kill()
		t.Fatalf("rotplan did not stop within %v of the signal", hangDetector)
		return nil
	}
}

// TestInterruptsWindDown: outside a phase that winds down, a signal ends
// rotplan; inside, the first cancels the context and the second ends
// rotplan; after the phase, signals end rotplan again.
func TestInterruptsWindDown(t *testing.T) {
	tests := []struct {
		name       string
		windDown   bool
		signals    int
		wantCancel bool
		wantExits  int
		wantOutput string
	}{
		{"outside", false, 1, false, 1, "rotplan: stopped by SIGTERM.\n"},
		{"inside, once", true, 1, true, 0, ""},
		{"inside, twice", true, 2, true, 1, "rotplan: stopped at once by a second SIGTERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			exits := 0
			ctx, in := catchInterrupts(&out, func(code int) {
				if code != exitFailed {
					t.Errorf("exit %d, want %d", code, exitFailed)
				}
				exits++
			})
			if tt.windDown {
				defer windDown(ctx)()
			}
			sigs := make(chan os.Signal, tt.signals)
			for range tt.signals {
				sigs <- syscall.SIGTERM
			}
			close(sigs)
			in.watch(sigs) // returns once it has handled them all
			if got := ctx.Err() != nil; got != tt.wantCancel {
				t.Errorf("context cancelled: %v, want %v", got, tt.wantCancel)
			}
			if exits != tt.wantExits {
				t.Errorf("%d exits, want %d", exits, tt.wantExits)
			}
			if !strings.HasPrefix(out.String(), tt.wantOutput) {
				t.Errorf("output %q, want it to begin with %q", out.String(), tt.wantOutput)
			}
		})
	}
}

// TestRunWindsDownOnASignal: a signal while a run's steps run stops the
// run in order: the step under way is interrupted, the run is journaled
// and reported as interrupted, exit 1.
func TestRunWindsDownOnASignal(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "p.hcl")
	writeFile(t, plan, "reload \"slow\" {\n  command = [\"/bin/sleep\", \"600\"]\n}\n")
	cmd := exec.Command(os.Args[0], "run", "-json", "-state-dir", filepath.Join(dir, "state"), plan)
	cmd.Env = append(os.Environ(), "ROTPLAN_TEST_MAIN=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	events := bufio.NewScanner(stdout)
	var seen []string
	for events.Scan() && !strings.Contains(events.Text(), `"type":"step_started"`) {
		seen = append(seen, events.Text())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for events.Scan() {
		seen = append(seen, events.Text())
	}
	err = waitFor(t, cmd)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitFailed {
		t.Errorf("rotplan run ended with %v, want exit %d", err, exitFailed)
	}
	if len(seen) == 0 || !strings.Contains(seen[len(seen)-1], `"status":"interrupted"`) {
		t.Errorf("the run did not end interrupted: %q\nstderr:\n%s", seen, stderr.String())
	}
	if strings.Contains(stderr.String(), "stopped by") {
		t.Errorf("rotplan stopped at once rather than in order:\n%s", stderr.String())
	}
}
