package command

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// OutputLimit bounds how much of a command's output is kept: the end of the
// output is where the reason for a failure usually is.
const OutputLimit = 4 << 10

// errTimeout tells a command's own time limit apart from its caller's
// context ending.
var errTimeout = errors.New("command timed out")

// Run runs argv, without a shell, with a time limit. The command runs in a
// process group of its own, and the whole group is killed on timeout or
// when ctx ends: a `sh -c` wrapper that is killed alone would leave its
// children holding the output pipe, and rotplan waiting. It returns the end
// of the command's combined output (at most OutputLimit bytes), for a debug
// log. An error quotes the command, says why it failed (exit status, time
// limit, interruption) and holds the end of its output, so a caller has
// nothing else to report. An empty argv or a time limit that is not
// positive is an error, not a panic, since both may come from a plan.
func Run(ctx context.Context, argv []string, timeout time.Duration) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", errors.New("no command to run: the program name is empty")
	}
	if timeout <= 0 {
		return "", fmt.Errorf("command %s: the time limit %s is not positive", Quote(argv), timeout)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errTimeout)
	defer cancel()

	out := &tailBuffer{max: OutputLimit}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	// Should a descendant escape the group and keep the pipe open, stop
	// waiting for it anyway.
	cmd.WaitDelay = 5 * time.Second

	err := cmd.Run()
	if err == nil {
		return out.String(), nil
	}
	var why string
	var exitErr *exec.ExitError
	switch {
	case context.Cause(ctx) == errTimeout:
		why = fmt.Sprintf("timed out after %s", timeout)
	case ctx.Err() != nil:
		why = "interrupted: " + context.Cause(ctx).Error()
	case errors.As(err, &exitErr):
		why = "failed: " + exitErr.ProcessState.String()
	default:
		why = "failed: " + Plain(err).Error()
	}
	what := "command " + Quote(argv)
	if o := out.String(); o != "" {
		return "", fmt.Errorf("%s %s; output:\n%s", what, why, o)
	}
	return "", fmt.Errorf("%s %s (no output)", what, why)
}

// Plain drops the *exec.Error and *fs.PathError wrappers that repeat the
// program or path the caller already names.
func Plain(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err
}

// Quote renders an argv for a message the way a shell user would type it,
// quoting only the words that need it.
func Quote(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$`;&|<>*?()[]{}#~") {
			words[i] = strconv.Quote(a)
		} else {
			words[i] = a
		}
	}
	return strings.Join(words, " ")
}

// ShellWord quotes s for a POSIX shell, only when it needs it: single
// quotes, unlike the double quotes Quote writes, keep a shell from
// expanding a "$", so the word can be pasted into a shell or sent to a
// remote one as it is.
func ShellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=+,@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ShellJoin quotes each word of argv with ShellWord and joins them: a
// command line a POSIX shell runs as argv.
func ShellJoin(argv []string) string {
	words := make([]string, len(argv))
	for i, a := range argv {
		words[i] = ShellWord(a)
	}
	return strings.Join(words, " ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu        sync.Mutex
	max       int
	buf       []byte
	truncated bool
}

// Write implements io.Writer, keeping only the last bytes.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	if len(p) >= b.max {
		b.truncated = b.truncated || len(b.buf) > 0 || len(p) > b.max
		b.buf = append(b.buf[:0], p[len(p)-b.max:]...)
		return n, nil
	}
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		copy(b.buf, b.buf[over:])
		b.buf = b.buf[:b.max]
		b.truncated = true
	}
	return n, nil
}

// String returns the kept output, trimmed, marked when its start was cut.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	kept := b.buf
	if b.truncated {
		// Do not start in the middle of a UTF-8 sequence.
		for len(kept) > 0 && !utf8.RuneStart(kept[0]) {
			kept = kept[1:]
		}
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(kept), "\uFFFD"))
	if b.truncated {
		return "[…]" + s
	}
	return s
}
