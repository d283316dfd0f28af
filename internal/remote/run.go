package remote

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rotplan/rotplan/internal/command"
	"golang.org/x/crypto/ssh"
)

// OutputLimit bounds how much of a command's standard output, and of its
// standard error, Run keeps: the first OutputLimit bytes of each.
const OutputLimit = 256 << 10

// Result is what a command run on a host printed and how it ended.
type Result struct {
	// Stdout and Stderr are the first OutputLimit bytes of each.
	Stdout, Stderr []byte
	// StdoutTruncated and StderrTruncated are set when more was
	// printed than was kept.
	StdoutTruncated, StderrTruncated bool
	// ExitStatus is the command's exit status; -1 when it was killed by
	// a signal or the host reported none.
	ExitStatus int
}

// ExitError is a command that ran and failed: a non-zero exit status, or
// killed by a signal.
type ExitError struct {
	// Host is where it ran; Argv, what ran.
	Host Host
	Argv []string
	// Status is the exit status, -1 when there is none.
	Status int
	// Signal names the signal that killed it ("KILL"), if one did.
	Signal string
	// Stderr is the end of what it printed on standard error.
	Stderr string
}

// Error names the command, the host and how it ended, with the end of its
// standard error.
func (e *ExitError) Error() string {
	how := fmt.Sprintf("exited with status %d", e.Status)
	if e.Signal != "" {
		how = "was killed by signal " + e.Signal
	}
	msg := fmt.Sprintf("command %s on %s %s", Quote(e.Argv), e.Host, how)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

// Run runs argv on the host and waits for it. The words are quoted for
// the remote user's login shell, which must be a POSIX shell (sh, bash,
// dash, ksh, zsh): SSH hands the server one command line, never an argv.
// A command that exits with a status other than 0 returns its Result and
// an *ExitError. When ctx ends first, the command and its process group
// are killed and Run returns ctx's error; so are they when the connection
// is lost. See watchdog for how, and for what escapes (a command that
// leaves its process group).
func (c *Conn) Run(ctx context.Context, argv []string) (Result, error) {
	res := Result{ExitStatus: -1}
	if len(argv) == 0 || argv[0] == "" {
		return res, errors.New("no command to run: the program name is empty")
	}
	select {
	case c.sessions <- struct{}{}:
		defer func() { <-c.sessions }()
	case <-ctx.Done():
		return res, context.Cause(ctx)
	}
	s, err := c.client.NewSession()
	if err != nil {
		return res, fmt.Errorf("running %s on %s: %w", Quote(argv), c.host, err)
	}
	defer s.Close()
	stdout, stderr := &headBuffer{max: OutputLimit}, &headBuffer{max: OutputLimit}
	s.Stdout, s.Stderr = stdout, stderr
	// The watchdog in commandLine kills the command when its standard
	// input ends: kept open until the command is over, closed to cancel.
	stdin, err := s.StdinPipe()
	if err != nil {
		return res, fmt.Errorf("running %s on %s: %w", Quote(argv), c.host, err)
	}
	if err := s.Start(commandLine(argv)); err != nil {
		return res, fmt.Errorf("running %s on %s: %w", Quote(argv), c.host, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case err = <-waited:
	case <-ctx.Done():
		stdin.Close()
		s.Signal(ssh.SIGKILL)
		// The server closes the channel once the command is gone; one
		// that does not is not waited for any longer.
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
		}
		return res, fmt.Errorf("running %s on %s: %w", Quote(argv), c.host, context.Cause(ctx))
	}
	res.Stdout, res.StdoutTruncated = stdout.buf, stdout.truncated
	res.Stderr, res.StderrTruncated = stderr.buf, stderr.truncated
	var exit *ssh.ExitError
	switch {
	case err == nil:
		res.ExitStatus = 0
		return res, nil
	case errors.As(err, &exit):
		e := &ExitError{Host: c.host, Argv: argv, Status: -1, Signal: exit.Signal(), Stderr: tail(res.Stderr, 1024)}
		if e.Signal == "" {
			e.Status = exit.ExitStatus()
			res.ExitStatus = e.Status
		}
		return res, e
	}
	return res, fmt.Errorf("running %s on %s: %w", Quote(argv), c.host, err)
}

// watchdog runs the command given as its arguments ("$@") and kills it
// when its own standard input ends: when Run closes it on cancellation,
// or when the connection is lost and sshd closes the session's pipes. It
// kills with "kill -KILL 0", the whole process group, which sshd made for
// the session (setsid), so a command's children die with it. The SSH
// "signal" request alone would not do: OpenSSH's sshd refuses it for a
// root login ("session signalling requires privilege separation", and
// root's sessions run without), and it cannot reach a command whose
// connection is gone. The command reads /dev/null, as an asynchronous
// command does in a non-interactive shell.
const watchdog = `exec 3<&0
"$@" 3<&- &
c=$!
{ read -r _ || :; kill -KILL 0; } <&3 >/dev/null 2>&1 &
w=$!
exec 3<&-
wait "$c"; s=$?
kill "$w" 2>/dev/null
exit "$s"`

// commandLine is what Run hands the server for argv: the watchdog script
// run by sh, with argv quoted for the login shell as its arguments.
func commandLine(argv []string) string {
	return "sh -c " + command.ShellWord(watchdog) + " rotplan-run " + Quote(argv)
}

// Quote renders argv as the remote shell is given it, each word quoted
// when it needs to be.
func Quote(argv []string) string {
	return command.ShellJoin(argv)
}

// tail returns the last at most n bytes of b as trimmed text.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(b), "\uFFFD"))
}

// headBuffer keeps the first max bytes written to it; the ssh package
// writes to it from one goroutine per stream.
type headBuffer struct {
	max       int
	buf       []byte
	truncated bool
}

// Write implements io.Writer, dropping what is over the bound.
func (b *headBuffer) Write(p []byte) (int, error) {
	room := b.max - len(b.buf)
	if len(p) > room {
		b.truncated = true
		b.buf = append(b.buf, p[:max(room, 0)]...)
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}
