package proc

import (
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// Process is a started command whose end is waited for in the background.
type Process struct {
	// Cmd is the command, started.
	Cmd  *exec.Cmd
	done chan struct{}
	err  error // Wait's result; valid after done is closed
}

// Spawn starts cmd and waits for it in the background.
func Spawn(cmd *exec.Cmd) (*Process, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the process has exited and been waited for.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is what waiting for the process returned; valid once Done is closed.
func (p *Process) Err() error { return p.err }

// PID is the process's id.
func (p *Process) PID() int { return p.Cmd.Process.Pid }

// Terminate sends SIGTERM, SIGKILL after grace, and waits for the process
// to exit; what names it in the error.
func (p *Process) Terminate(what string, grace time.Duration) error {
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
		_ = p.Cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s (pid %d) did not stop within %s after SIGTERM; killed", what, p.PID(), grace)
	}
}
