package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Reload is the `reload` step kind: it makes a service pick up its new
// certificate, either by signalling its process (found through a pid file or
// given directly) or by running a command such as `systemctl reload vault`.
type Reload struct{}

var (
	_ HostChecker  = (*Reload)(nil)
	_ Step         = (*Reload)(nil)
	_ Rollbacker   = (*Reload)(nil)
	_ RestoreAware = (*Reload)(nil)
	_ Summarizer   = (*Reload)(nil)
	_ Planner      = (*Reload)(nil)
)

const (
	defaultReloadSignal  = "SIGHUP"
	defaultReloadTimeout = 60 * time.Second
	// reloadOutputLimit bounds how much of a command's output is kept: the
	// end of the output is where the reason for a failure usually is.
	reloadOutputLimit = 4 << 10
	// maxPIDFileSize is far more than any pid file holds; a larger file is
	// not a pid file, and is not read (it might be a key named by mistake).
	maxPIDFileSize = 64
)

// reloadSignals are the signals a reload may send, by name without "SIG".
// The list is short on purpose: these are the ones services use for reloads
// and restarts.
var reloadSignals = map[string]syscall.Signal{
	"HUP":   syscall.SIGHUP,
	"INT":   syscall.SIGINT,
	"QUIT":  syscall.SIGQUIT,
	"KILL":  syscall.SIGKILL,
	"USR1":  syscall.SIGUSR1,
	"USR2":  syscall.SIGUSR2,
	"TERM":  syscall.SIGTERM,
	"ALRM":  syscall.SIGALRM,
	"CONT":  syscall.SIGCONT,
	"STOP":  syscall.SIGSTOP,
	"WINCH": syscall.SIGWINCH,
}

// Spec is the schema of a reload block.
func (*Reload) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"pid_file": &hcldec.AttrSpec{Name: "pid_file", Type: cty.String},
		"pid":      &hcldec.AttrSpec{Name: "pid", Type: cty.Number},
		"command":  &hcldec.AttrSpec{Name: "command", Type: cty.List(cty.String)},
		"signal":   &hcldec.AttrSpec{Name: "signal", Type: cty.String},
		"timeout":  &hcldec.AttrSpec{Name: "timeout", Type: cty.String},
	}
}

// Outputs describes what a reload step produces: the process signalled and
// the signal (pid 0 and signal "" when a command ran), or the command run
// (empty when a signal was sent).
func (*Reload) Outputs() map[string]Output {
	return map[string]Output{
		"pid":     {Type: cty.Number},
		"signal":  {Type: cty.String},
		"command": {Type: cty.List(cty.String)},
	}
}

// reloadTarget is a reload block once read and checked.
type reloadTarget struct {
	pidFile string
	pid     int
	command []string
	signal  syscall.Signal
	sigName string // "SIGHUP"
	timeout time.Duration
}

// Validate checks the block's arguments. It does not read the pid file: the
// service may only be started, and the file written, by an earlier step.
func (*Reload) Validate(cfg Config) error {
	_, err := parseReload(cfg)
	return err
}

// CheckHost implements HostChecker: the program a command runs is there,
// and the process a signal goes to is alive and rotplan's to signal
// (signal 0, which sends nothing). Both are better found before the run
// issues or writes anything.
func (*Reload) CheckHost(ctx context.Context, _ *Env, cfg Config) error {
	t, err := parseReload(cfg)
	if err != nil {
		return err
	}
	if len(t.command) > 0 {
		if _, err := exec.LookPath(t.command[0]); err != nil {
			return attrErr(cfg.Path("command"), "%s: %v", quoteArgv(t.command[:1]), unwrapExecError(err))
		}
		return ctx.Err()
	}
	_, _, err = t.target(cfg)
	return joinErrors(err, ctx.Err())
}

// target reads the pid to signal, from pid_file when given (from says so,
// for messages), and checks with signal 0 that the process is there and
// rotplan may signal it.
func (t reloadTarget) target(cfg Config) (pid int, from string, err error) {
	pid = t.pid
	arg := "pid"
	if t.pidFile != "" {
		arg, from = "pid_file", " (from "+t.pidFile+")"
		if pid, err = readPIDFile(t.pidFile); err != nil {
			return 0, from, attrErr(cfg.Path("pid_file"), "%v", err)
		}
	}
	switch err := syscall.Kill(pid, 0); {
	case errors.Is(err, syscall.ESRCH):
		return pid, from, attrErr(cfg.Path(arg), "no process has pid %d%s: the service is not running, or the pid file is stale", pid, from)
	case errors.Is(err, syscall.EPERM):
		return pid, from, attrErr(cfg.Path(arg), "not allowed to signal pid %d%s: run as its owner or as root", pid, from)
	case err != nil:
		return pid, from, attrErr(cfg.Path(arg), "pid %d%s: %v", pid, from, err)
	}
	return pid, from, nil
}

// Apply sends the signal or runs the command.
func (*Reload) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	if err := ctx.Err(); err != nil {
		return cty.NilVal, err
	}
	t, err := parseReload(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	return t.reload(ctx, env)
}

// Plan implements Planner: the process a signal would go to must be alive
// and ours to signal (checked with signal 0, which sends nothing); a
// command is only named, never run.
func (*Reload) Plan(ctx context.Context, _ *Env, cfg Config) (Preview, error) {
	pv := Preview{Action: Replace}
	t, err := parseReload(cfg)
	if err != nil {
		if err == ErrUnknown {
			err = nil
		}
		return pv, err
	}
	if len(t.command) > 0 {
		pv.Reason = "runs " + quoteArgv(t.command)
		pv.Outputs = reloadOutputs(0, "", cty.ListVal(stringValues(t.command)))
		return pv, ctx.Err()
	}
	pid, from, err := t.target(cfg)
	if err != nil {
		pv.Problems = append(pv.Problems, err)
		if pid == 0 {
			return pv, ctx.Err()
		}
	}
	pv.Reason = fmt.Sprintf("%s to pid %d", t.sigName, pid)
	pv.Now = append(pv.Now, Fact{Name: "process", Value: describeProcess(pid) + from})
	pv.Outputs = reloadOutputs(pid, t.sigName, cty.ListValEmpty(cty.String))
	return pv, ctx.Err()
}

// describeProcess names a process as ps would: "pid 812 (vault)".
func describeProcess(pid int) string {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return fmt.Sprintf("pid %d", pid)
	}
	return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
}

// stringValues converts strings to cty values.
func stringValues(ss []string) []cty.Value {
	out := make([]cty.Value, len(ss))
	for i, s := range ss {
		out[i] = cty.StringVal(s)
	}
	return out
}

// Snapshot implements Rollbacker. A reload changes nothing that needs
// putting back, so there is nothing to record.
func (*Reload) Snapshot(ctx context.Context, _ *Env, _ Config) (map[string]string, error) {
	return map[string]string{}, ctx.Err()
}

// Rollback implements Rollbacker by reloading again, exactly as Apply does
// (the pid file is read afresh, since the service may have restarted), so
// that the service loads the files the other steps' rollbacks restored.
// That is also why Reload is RestoreAware: it must run after them.
func (*Reload) Rollback(ctx context.Context, env *Env, cfg Config, _ cty.Value, _ map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := parseReload(cfg)
	if err != nil {
		return fmt.Errorf("reload: rolling back: %w; once the files are restored, reload the service by hand", mustBeKnown(err))
	}
	out, err := t.reload(ctx, env)
	if err != nil {
		return fmt.Errorf("reload: rolling back: %w; once the files are restored, reload the service by hand: %s", err, t.byHand())
	}
	if len(t.command) > 0 {
		env.Log.Info("ran the reload command again, for the restored files", "command", t.command)
	} else {
		pid, _ := outputInt(out, "pid")
		env.Log.Info("signalled the service again, for the restored files", "pid", pid, "signal", t.sigName, "pid_file", t.pidFile)
	}
	return nil
}

// RollbackAfterRestore implements RestoreAware: a reload is undone by
// reloading once every other step has put its files back.
func (*Reload) RollbackAfterRestore() {}

// byHand is the shell command that does what reload does.
func (t reloadTarget) byHand() string {
	switch {
	case len(t.command) > 0:
		words := make([]string, len(t.command))
		for i, a := range t.command {
			words[i] = shellQuote(a)
		}
		return strings.Join(words, " ")
	case t.pidFile != "":
		return fmt.Sprintf("kill -s %s \"$(cat %s)\"", strings.TrimPrefix(t.sigName, "SIG"), shellQuote(t.pidFile))
	}
	return fmt.Sprintf("kill -s %s %d", strings.TrimPrefix(t.sigName, "SIG"), t.pid)
}

// reload sends the signal or runs the command: what Apply does, and what
// Rollback does again.
func (t reloadTarget) reload(ctx context.Context, env *Env) (cty.Value, error) {
	if len(t.command) > 0 {
		out, err := runCommand(ctx, t.command, t.timeout)
		if err != nil {
			return cty.NilVal, err
		}
		env.Log.Debug("ran reload command", "command", t.command, "output", out)
		vals := make([]cty.Value, len(t.command))
		for i, a := range t.command {
			vals[i] = cty.StringVal(a)
		}
		return reloadOutputs(0, "", cty.ListVal(vals)), nil
	}

	pid, from := t.pid, ""
	if t.pidFile != "" {
		var err error
		if pid, err = readPIDFile(t.pidFile); err != nil {
			return cty.NilVal, err
		}
		from = " (from " + t.pidFile + ")"
	}
	// No separate kill(pid, 0) probe first: it would add a race and tell
	// nothing that the ESRCH of the real kill does not.
	if err := syscall.Kill(pid, t.signal); err != nil {
		return cty.NilVal, signalError(pid, from, err)
	}
	env.Log.Debug("sent signal", "pid", pid, "signal", t.sigName, "pid_file", t.pidFile)
	return reloadOutputs(pid, t.sigName, cty.ListValEmpty(cty.String)), nil
}

// reloadOutputs builds the outputs object; every attribute is always set, so
// its type matches Outputs whichever way the reload was done.
func reloadOutputs(pid int, signal string, command cty.Value) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"pid":     cty.NumberIntVal(int64(pid)),
		"signal":  cty.StringVal(signal),
		"command": command,
	})
}

// Summary implements Summarizer: the command run, or the process signalled
// and the signal, whichever way the reload was done. The outputs always
// hold all three, so the empty ones say which way it was.
func (*Reload) Summary(outputs cty.Value) []Fact {
	if argv, ok := outputStrings(outputs, "command"); ok && len(argv) > 0 {
		return []Fact{{Name: "command", Value: quoteArgv(argv)}}
	}
	var facts []Fact
	if pid, ok := outputInt(outputs, "pid"); ok && pid > 0 {
		facts = append(facts, Fact{Name: "pid", Value: strconv.FormatInt(pid, 10)})
	}
	if sig, ok := outputString(outputs, "signal"); ok && sig != "" {
		facts = append(facts, Fact{Name: "signal", Value: sig})
	}
	return facts
}

// signalError explains a failed kill(2): a stale pid file (ESRCH) is the
// usual cause, and deserves a message that names the pid and the file.
func signalError(pid int, from string, err error) error {
	switch {
	case errors.Is(err, syscall.ESRCH):
		return fmt.Errorf("no process with pid %d%s", pid, from)
	case errors.Is(err, syscall.EPERM):
		return fmt.Errorf("not permitted to signal pid %d%s", pid, from)
	}
	return fmt.Errorf("signalling pid %d%s: %w", pid, from, err)
}

// parseReload reads a reload block. Every problem found is reported;
// ErrUnknown only when there is none but some value is not known yet.
func parseReload(cfg Config) (reloadTarget, error) {
	var t reloadTarget
	var errs []error

	var given []string
	for _, name := range []string{"pid_file", "pid", "command"} {
		if cfg.Set(name) {
			given = append(given, name)
		}
	}
	switch {
	case len(given) == 0:
		return t, attrErr(cfg.Path("pid_file"), "give one of pid_file, pid or command to say what to reload")
	case len(given) > 1:
		return t, attrErr(cfg.Path(given[1]), "give only one of pid_file, pid or command (%s is also given)", given[0])
	}

	switch given[0] {
	case "pid_file":
		p, err := cfg.RequireString("pid_file")
		t.pidFile = p
		errs = append(errs, err)
	case "pid":
		pid, err := reloadPID(cfg)
		t.pid = pid
		errs = append(errs, err)
	case "command":
		argv, err := reloadCommand(cfg)
		t.command = argv
		errs = append(errs, err)
	}

	if given[0] == "command" {
		if cfg.Set("signal") {
			errs = append(errs, attrErr(cfg.Path("signal"), "only applies to pid_file and pid: a command sends no signal"))
		}
		d, err := cfg.Duration("timeout", defaultReloadTimeout)
		t.timeout = d
		errs = append(errs, err)
	} else {
		if cfg.Set("timeout") {
			errs = append(errs, attrErr(cfg.Path("timeout"), "only applies to command: sending a signal does not wait"))
		}
		sig, name, err := reloadSignal(cfg)
		t.signal, t.sigName = sig, name
		errs = append(errs, err)
	}
	return t, joinErrors(errs...)
}

// reloadSignal reads the signal argument: "SIGHUP", "HUP" and "hup" all
// name the same signal, as kill(1) accepts them.
func reloadSignal(cfg Config) (syscall.Signal, string, error) {
	s := defaultReloadSignal
	if cfg.Set("signal") {
		if !cfg.Known("signal") {
			return 0, "", ErrUnknown
		}
		s = cfg.String("signal")
	}
	name := strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "SIG")
	sig, ok := reloadSignals[name]
	if !ok {
		return 0, "", attrErr(cfg.Path("signal"), "%q is not a signal rotplan sends: use one of %s (with or without \"SIG\")", s, signalList())
	}
	return sig, "SIG" + name, nil
}

func signalList() string {
	names := make([]string, 0, len(reloadSignals))
	for name := range reloadSignals {
		names = append(names, name)
	}
	// Sorted by number, the order kill -l lists them in.
	for i := 1; i < len(names); i++ {
		for j := i; j > 0 && reloadSignals[names[j]] < reloadSignals[names[j-1]]; j-- {
			names[j], names[j-1] = names[j-1], names[j]
		}
	}
	return strings.Join(names, ", ")
}

// reloadPID reads the pid argument. pid 0 and negative pids are refused: to
// kill(2) they mean process groups, which a reload must never hit by accident.
func reloadPID(cfg Config) (int, error) {
	n, _, err := cfg.Int("pid")
	var argErr *AttrError
	switch {
	case errors.As(err, &argErr):
		return 0, &AttrError{Path: argErr.Path, Err: fmt.Errorf("%v: want a positive whole number", argErr.Err)}
	case err != nil:
		return 0, err
	case n <= 0:
		return 0, attrErr(cfg.Path("pid"), "%d is not a process id: want a positive whole number", n)
	case n > math.MaxInt32:
		return 0, attrErr(cfg.Path("pid"), "%d is not a process id: too large", n)
	}
	return int(n), nil
}

// reloadCommand reads the command argument: an argv run without a shell, so
// that nothing in it is ever interpreted.
func reloadCommand(cfg Config) ([]string, error) {
	argv, err := cfg.StringList("command")
	if err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, attrErr(cfg.Path("command"), "must not be empty: give the program and its arguments, as in [\"systemctl\", \"reload\", \"vault\"]")
	}
	if argv[0] == "" {
		return nil, attrErr(cfg.Path("command"), "the program name (the first element) must not be empty")
	}
	return argv, nil
}

// readPIDFile reads the process id from a pid file. Errors name the file but
// never quote what it holds: a path given by mistake may name a secret.
func readPIDFile(path string) (int, error) {
	// Stat first: opening a named pipe would block until someone writes.
	fi, err := os.Stat(path)
	if err != nil {
		return 0, fmt.Errorf("reading pid file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("pid file %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("reading pid file: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPIDFileSize+1))
	if err != nil {
		return 0, fmt.Errorf("reading pid file: %w", err)
	}
	if len(b) > maxPIDFileSize {
		return 0, fmt.Errorf("pid file %s is too large to be a pid file (more than %d bytes)", path, maxPIDFileSize)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, fmt.Errorf("pid file %s is empty", path)
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 || pid > math.MaxInt32 {
		return 0, fmt.Errorf("pid file %s does not hold a process id (want a positive whole number)", path)
	}
	return pid, nil
}

// errCommandTimeout tells a command's own time limit apart from the run
// being interrupted.
var errCommandTimeout = errors.New("command timed out")

// RunCommand runs argv, without a shell, with a time limit, as a reload
// step runs its command; it is exported so that whatever else rotplan runs
// (the engine's per-step rollback hooks) runs the same way. The command
// runs in a process group of its own, and the whole group is killed on
// timeout or when ctx ends: a `sh -c` wrapper that is killed alone would
// leave its children holding the output pipe, and rotplan waiting. An error
// quotes the command, says why it failed (exit status, time limit,
// interruption) and holds the end of its combined output (at most 4 KiB:
// the end is where the reason for a failure usually is), so a caller has
// nothing else to report. An empty argv or a time limit that is not
// positive is an error, not a panic, since both may come from a plan.
func RunCommand(ctx context.Context, argv []string, timeout time.Duration) error {
	_, err := runCommand(ctx, argv, timeout)
	return err
}

// runCommand is RunCommand that also returns the end of the output of a
// command that succeeded, for the reload step's debug log.
func runCommand(ctx context.Context, argv []string, timeout time.Duration) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", errors.New("no command to run: the program name is empty")
	}
	if timeout <= 0 {
		return "", fmt.Errorf("command %s: the time limit %s is not positive", quoteArgv(argv), timeout)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, errCommandTimeout)
	defer cancel()

	out := &tailBuffer{max: reloadOutputLimit}
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
	case context.Cause(ctx) == errCommandTimeout:
		why = fmt.Sprintf("timed out after %s", timeout)
	case ctx.Err() != nil:
		why = "interrupted: " + context.Cause(ctx).Error()
	case errors.As(err, &exitErr):
		why = "failed: " + exitErr.ProcessState.String()
	default:
		why = "failed: " + unwrapExecError(err).Error()
	}
	what := "command " + quoteArgv(argv)
	if o := out.String(); o != "" {
		return "", fmt.Errorf("%s %s; output:\n%s", what, why, o)
	}
	return "", fmt.Errorf("%s %s (no output)", what, why)
}

// unwrapExecError drops the *exec.Error and *fs.PathError wrappers that
// repeat the program name the caller already gives.
func unwrapExecError(err error) error {
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

// quoteArgv renders an argv for a message the way a shell user would type
// it, quoting only the words that need it.
func quoteArgv(argv []string) string {
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
