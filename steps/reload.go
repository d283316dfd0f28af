package steps

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/command"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/sys/unix"
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
	_ HostRunner   = (*Reload)(nil)
	_ SettingsUser = (*Reload)(nil)
)

// RunsOnHost implements HostRunner: a reload with `on` runs its command,
// or signals the process its pid file names, on that host (see
// reload_remote.go).
func (*Reload) RunsOnHost() {}

// Settings implements SettingsUser: the host blocks its steps name with
// `on`.
func (*Reload) Settings() Settings { return hostBlock() }

// parseReloadFor is parseReload for env's host, where there is one.
func parseReloadFor(env *Env, cfg Config) (reloadTarget, error) {
	if _, ok := env.Host(); ok {
		return parseRemoteReload(cfg)
	}
	return parseReload(cfg)
}

// findFor is find on env's host, where there is one.
func (t reloadTarget) findFor(ctx context.Context, env *Env, cfg Config) (target, error) {
	if _, ok := env.Host(); ok {
		return t.planRemote(ctx, env, cfg)
	}
	return t.find(env, cfg, nil)
}

const (
	defaultReloadSignal  = "SIGHUP"
	defaultReloadTimeout = 60 * time.Second
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
		"expect": &hcldec.BlockSpec{TypeName: "expect", Nested: hcldec.ObjectSpec{
			"executable": &hcldec.AttrSpec{Name: "executable", Type: cty.String},
			"name":       &hcldec.AttrSpec{Name: "name", Type: cty.String},
			"user":       &hcldec.AttrSpec{Name: "user", Type: cty.String},
		}},
	}
}

// Outputs describes what a reload step produces: the process signalled and
// the signal (pid 0 and signal "" when a command ran), or the command run
// (empty when a signal was sent), and when the signal was sent or the
// command returned (at, RFC 3339 with nanoseconds): a verify step's since,
// to report how long after it a check first passed.
func (*Reload) Outputs() map[string]Output {
	return map[string]Output{
		"pid":     {Type: cty.Number},
		"signal":  {Type: cty.String},
		"command": {Type: cty.List(cty.String)},
		"at":      {Type: cty.String},
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
	expect  reloadExpect
}

// reloadExpect is what a reload's expect block says of the process it
// signals; empty fields are not checked.
type reloadExpect struct {
	executable string // an absolute path
	name       string // the executable's file name
	user       string // a user name or uid
}

// Validate checks the block's arguments. It does not read the pid file: the
// service may only be started, and the file written, by an earlier step.
func (*Reload) Validate(cfg Config) error {
	_, err := parseReload(cfg)
	return err
}

// CheckHost implements HostChecker: the program a command runs is there;
// the process a signal goes to is alive, rotplan's to signal and the one
// the plan means (see vet). Both are better found before the run issues
// or writes anything.
func (*Reload) CheckHost(ctx context.Context, env *Env, cfg Config) error {
	if _, ok := env.Host(); ok {
		return checkReloadRemote(ctx, env, cfg)
	}
	t, err := parseReload(cfg)
	if err != nil {
		return err
	}
	if len(t.command) > 0 {
		if _, err := exec.LookPath(t.command[0]); err != nil {
			return attrErr(cfg.Path("command"), "%s: %v", command.Quote(t.command[:1]), command.Plain(err))
		}
		return ctx.Err()
	}
	if _, err := t.find(env, cfg, nil); err != nil {
		return err // as it is: joined again, its errors would show as one
	}
	return ctx.Err()
}

// target is the process a reload signals, as found now.
type target struct {
	process
	from string // " (from /run/vault.pid)" when the pid came from a pid file
	arg  string // the argument the pid came from: pid_file or pid
}

// readPID reads the pid to signal, from pid_file when given, with what
// vet needs of the pid file.
func (t reloadTarget) readPID(cfg Config) (tg target, pidFile fs.FileInfo, err error) {
	tg.pid, tg.arg = t.pid, "pid"
	if t.pidFile != "" {
		tg.arg, tg.from = "pid_file", " (from "+t.pidFile+")"
		if tg.pid, pidFile, err = readPIDFile(t.pidFile); err != nil {
			return tg, nil, attrErr(cfg.Path("pid_file"), "%v", err)
		}
	}
	return tg, pidFile, nil
}

// find reads the pid to signal and vets its process.
func (t reloadTarget) find(env *Env, cfg Config, was *process) (target, error) {
	tg, pidFile, err := t.readPID(cfg)
	if err != nil {
		return tg, err
	}
	return t.vet(env, cfg, tg, pidFile, was)
}

// vet checks that the process with tg's pid is one rotplan may signal. It
// must be alive and rotplan's to signal (signal 0, which sends nothing).
// A pid file must be writable by its owner alone, and its owner root or
// the process's user: whoever else could write it would choose what
// rotplan, often run as root, signals. The process must be what the
// expect block says. And it must be the process was (from the journal,
// for a rollback), or else the first one this run found for the same
// pid_file or pid (at the preflight), or a restart of it: the same pid
// with another start time is a pid reused by an unrelated process; another
// pid must run the same program as the same user.
func (t reloadTarget) vet(env *Env, cfg Config, tg target, pidFile fs.FileInfo, was *process) (target, error) {
	pid, from, arg := tg.pid, tg.from, cfg.Path(tg.arg)
	switch err := syscall.Kill(pid, 0); {
	case errors.Is(err, syscall.ESRCH):
		return tg, attrErr(arg, "no process has pid %d%s: the service is not running, or the pid file is stale", pid, from)
	case errors.Is(err, syscall.EPERM):
		return tg, attrErr(arg, "not allowed to signal pid %d%s: run as its owner or as root", pid, from)
	case err != nil:
		return tg, attrErr(arg, "pid %d%s: %v", pid, from, err)
	}
	p, err := readProcess(pid)
	if err != nil {
		return tg, attrErr(arg, "pid %d%s: %v", pid, from, err)
	}
	tg.process = p
	if pidFile != nil {
		uid, _, ok := fileOwner(pidFile)
		if err := pidFileWriters(t.pidFile, pidFile.Mode(), uid, ok, p); err != nil {
			return tg, attrErr(arg, "%v", err)
		}
	}
	if err := t.expect.check(cfg, tg, realPath, lookupUID); err != nil {
		return tg, err
	}
	return t.sameAsFirst(env, cfg, tg, "", was)
}

// sameAsFirst checks that tg is the process was, or else the first one
// the run found for the same source on the same host (host "" is where
// rotplan runs), or a restart of it (see vet).
func (t reloadTarget) sameAsFirst(env *Env, cfg Config, tg target, host string, was *process) (target, error) {
	p, pid, arg := tg.process, tg.pid, cfg.Path(tg.arg)
	if was == nil && env != nil && env.session != nil {
		key := t.source()
		if host != "" {
			key = host + " " + key
		}
		if v, loaded := env.session.processes.LoadOrStore(key, p); loaded {
			first := v.(process)
			was = &first
		}
	}
	if was != nil {
		if err := p.sameServiceAs(*was); err != nil {
			check := "which process has pid " + strconv.Itoa(pid)
			if t.pidFile != "" {
				check = "which process the pid file " + t.pidFile + " names"
			}
			return tg, attrErr(arg, "%v; refusing to signal it: check %s", err, check)
		}
	}
	return tg, nil
}

// source says where a reload's pid comes from, as the key under which a run
// remembers the process it found there first.
func (t reloadTarget) source() string {
	if t.pidFile != "" {
		return "pid_file " + filepath.Clean(t.pidFile)
	}
	return "pid " + strconv.Itoa(t.pid)
}

// pidFileWriters checks that only root or the process's own user could
// have written the pid file (mode, and owner uid when ok) that names p.
func pidFileWriters(path string, mode fs.FileMode, uid int, ok bool, p process) error {
	if perm := mode.Perm(); perm&0o022 != 0 {
		return fmt.Errorf("pid file %s is writable by group or others (mode %04o): whoever can write it chooses what rotplan signals; make it writable by its owner alone (chmod go-w %s)", path, perm, command.ShellWord(path))
	}
	if ok && uid != 0 && uid != p.uid {
		return fmt.Errorf("pid file %s is owned by %s but names pid %d, which runs as %s: a pid file may name only processes of its owner, unless root owns it; check which process it names and who wrote it", path, describeUID(uid), p.pid, describeUID(p.uid))
	}
	return nil
}

// realPath is the executable path with its symbolic links resolved where
// rotplan runs: /proc/PID/exe has them resolved (/usr/bin/vault may be
// /opt/vault/bin/vault).
func realPath(p string) string {
	if real, err := filepath.EvalSymlinks(p); err == nil {
		return real
	}
	return p
}

// check says how the process tg differs from what the expect block says,
// at the argument that says it. resolve resolves the symbolic links of
// a path and lookup finds a user's uid, where the process runs.
func (e reloadExpect) check(cfg Config, tg target, resolve func(string) string, lookup func(string) (int, error)) error {
	var errs []error
	refuse := func(name, format string, args ...any) {
		errs = append(errs, attrErr(cfg.Path("expect."+name), "pid %d%s %s: refusing to signal it; check which process the pid file names, or correct expect",
			tg.pid, tg.from, fmt.Sprintf(format, args...)))
	}
	if (e.executable != "" || e.name != "") && tg.exe == "" {
		name := "executable"
		if e.executable == "" {
			name = "name"
		}
		refuse(name, "runs a program rotplan cannot see (%v); run rotplan as root or as the process's user", tg.exeErr)
	}
	if e.executable != "" && tg.exe != "" {
		if tg.exe != resolve(e.executable) {
			refuse("executable", "runs %s, not %s", tg.exe, e.executable)
		}
	}
	if e.name != "" && tg.exe != "" && filepath.Base(tg.exe) != e.name {
		refuse("name", "is %q (%s), not %q", filepath.Base(tg.exe), tg.exe, e.name)
	}
	if e.user != "" {
		uid, err := lookup(e.user)
		switch {
		case err != nil:
			errs = append(errs, attrErr(cfg.Path("expect.user"), "%v", err))
		case tg.uid != uid || tg.euid != uid:
			runs := describeUID(tg.uid)
			if tg.euid != tg.uid {
				runs += ", effective " + describeUID(tg.euid)
			}
			refuse("user", "runs as %s, not %s", runs, describeUID(uid))
		}
	}
	return joinErrors(errs...)
}

// Apply sends the signal or runs the command.
func (*Reload) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	if err := ctx.Err(); err != nil {
		return cty.NilVal, err
	}
	t, err := parseReloadFor(env, cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	return t.reload(ctx, env, cfg, nil)
}

// Plan implements Planner: the process a signal would go to must pass the
// same checks as at the run (see vet; nothing is sent), and is shown:
// its pid, program and user. A command is only named, never run.
func (*Reload) Plan(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	pv := Preview{Action: Replace}
	t, err := parseReloadFor(env, cfg)
	if err != nil {
		if err == ErrUnknown {
			err = nil
		}
		return pv, err
	}
	if len(t.command) > 0 {
		pv.Reason = "runs " + command.Quote(t.command)
		pv.Outputs = reloadOutputs(0, "", cty.ListVal(stringValues(t.command)), cty.UnknownVal(cty.String))
		return pv, ctx.Err()
	}
	tg, err := t.findFor(ctx, env, cfg)
	if err != nil {
		pv.Problems = append(pv.Problems, err)
		if tg.pid == 0 {
			return pv, ctx.Err()
		}
	}
	pv.Reason = fmt.Sprintf("%s to pid %d", t.sigName, tg.pid)
	process := fmt.Sprintf("pid %d%s", tg.pid, tg.from)
	if tg.comm != "" {
		process = fmt.Sprintf("pid %d (%s)%s", tg.pid, tg.comm, tg.from)
	}
	pv.Now = append(pv.Now, Fact{Name: "process", Value: process})
	if tg.start != 0 {
		pv.Now = append(pv.Now, tg.facts()...)
	}
	pv.Outputs = reloadOutputs(tg.pid, t.sigName, cty.ListValEmpty(cty.String), cty.UnknownVal(cty.String))
	return pv, ctx.Err()
}

// stringValues converts strings to cty values.
func stringValues(ss []string) []cty.Value {
	out := make([]cty.Value, len(ss))
	for i, s := range ss {
		out[i] = cty.StringVal(s)
	}
	return out
}

// Snapshot implements Rollbacker: it records which process the reload is
// about to signal (pid, start time, program, user; nothing secret), so
// that a rollback, maybe from a resumed run, signals that process again or
// a restart of it, never an unrelated process that got its pid.
func (*Reload) Snapshot(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	t, err := parseReloadFor(env, cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	if len(t.command) > 0 {
		return map[string]string{}, ctx.Err()
	}
	tg, err := t.findFor(ctx, env, cfg)
	if err != nil {
		return nil, err
	}
	return tg.record(), ctx.Err()
}

// Rollback implements Rollbacker by reloading again, as Apply does (the
// pid file is read afresh, since the service may have restarted), so that
// the service loads the files the other steps' rollbacks restored. That is
// also why Reload is RestoreAware: it must run after them. The process
// must be the one Snapshot recorded, or a restart of it.
func (*Reload) Rollback(ctx context.Context, env *Env, cfg Config, _ cty.Value, snapshot map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := parseReloadFor(env, cfg)
	if err != nil {
		return fmt.Errorf("reload: rolling back: %w; once the files are restored, reload the service by hand", mustBeKnown(err))
	}
	was := recordedProcess(snapshot)
	out, err := t.reload(ctx, env, cfg, was)
	if err != nil {
		where := ""
		if host, ok := env.Host(); ok {
			where = " on " + host
		}
		return fmt.Errorf("reload: rolling back: %w; once the files are restored, reload the service by hand%s: %s", err, where, t.byHand(was))
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

// byHand is the shell command that does what reload does. A pid is never
// given without saying what to check first: it may be another process's
// by now. was is the process the run signalled, when known.
func (t reloadTarget) byHand(was *process) string {
	if len(t.command) > 0 {
		words := make([]string, len(t.command))
		for i, a := range t.command {
			words[i] = command.ShellWord(a)
		}
		return strings.Join(words, " ")
	}
	pid, which := strconv.Itoa(t.pid), "pid "+strconv.Itoa(t.pid)
	if t.pidFile != "" {
		pid, which = fmt.Sprintf("\"$(cat %s)\"", command.ShellWord(t.pidFile)), "the process "+t.pidFile+" names"
	}
	var what []string
	switch {
	case t.expect.executable != "":
		what = append(what, t.expect.executable)
	case t.expect.name != "":
		what = append(what, t.expect.name)
	case was != nil:
		what = append(what, was.program())
	}
	switch {
	case t.expect.user != "":
		what = append(what, "run by "+t.expect.user)
	case was != nil:
		what = append(what, "run by "+describeUID(was.uid))
	}
	service := "the service"
	if len(what) > 0 {
		service = strings.Join(what, " ")
	}
	return fmt.Sprintf("check that %s is %s: ps -o pid,user,lstart,args -p %s; then: kill -s %s %s",
		which, service, pid, strings.TrimPrefix(t.sigName, "SIG"), pid)
}

// reload sends the signal or runs the command: what Apply does, and what
// Rollback does again (was is then the process the run signalled).
func (t reloadTarget) reload(ctx context.Context, env *Env, cfg Config, was *process) (cty.Value, error) {
	if _, ok := env.Host(); ok {
		return t.reloadRemote(ctx, env, cfg, was)
	}
	if len(t.command) > 0 {
		out, err := command.Run(ctx, t.command, t.timeout)
		if err != nil {
			return cty.NilVal, err
		}
		env.Log.Debug("ran reload command", "command", t.command, "output", out)
		vals := make([]cty.Value, len(t.command))
		for i, a := range t.command {
			vals[i] = cty.StringVal(a)
		}
		return reloadOutputs(0, "", cty.ListVal(vals), reloadedAt()), nil
	}
	tg, err := t.send(env, cfg, was)
	if err != nil {
		return cty.NilVal, err
	}
	env.Log.Debug("sent signal", "pid", tg.pid, "signal", t.sigName, "pid_file", t.pidFile, "executable", tg.exe, "uid", tg.uid)
	return reloadOutputs(tg.pid, t.sigName, cty.ListValEmpty(cty.String), reloadedAt()), nil
}

// send vets the process and signals it. Through a pidfd (Linux 5.3 and
// later), opened before the process is vetted, the signal reaches the
// process that was vetted or none: should it exit and its pid be reused
// in between, the pidfd still names the one that exited. Without one,
// kill(2) follows the vetting as closely as rotplan can make it.
func (t reloadTarget) send(env *Env, cfg Config, was *process) (target, error) {
	tg, pidFile, err := t.readPID(cfg)
	if err != nil {
		return tg, err
	}
	pidfd, err := unix.PidfdOpen(tg.pid, 0)
	switch {
	case errors.Is(err, syscall.ESRCH):
		return tg, signalError(tg.pid, tg.from, err)
	case err != nil:
		env.Log.Debug("no pidfd, signalling with kill(2)", "pid", tg.pid, "error", err)
		pidfd = -1
	default:
		defer unix.Close(pidfd)
	}
	if tg, err = t.vet(env, cfg, tg, pidFile, was); err != nil {
		return tg, err
	}
	if pidfd >= 0 {
		err = unix.PidfdSendSignal(pidfd, t.signal, nil, 0)
	} else {
		err = syscall.Kill(tg.pid, t.signal)
	}
	if err != nil {
		return tg, signalError(tg.pid, tg.from, err)
	}
	return tg, nil
}

// reloadOutputs builds the outputs object; every attribute is always set, so
// its type matches Outputs whichever way the reload was done. at is when
// it was done (reloadedAt), unknown in a preview.
func reloadOutputs(pid int, signal string, command, at cty.Value) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"pid":     cty.NumberIntVal(int64(pid)),
		"signal":  cty.StringVal(signal),
		"command": command,
		"at":      at,
	})
}

// reloadedAt is a reload's at output for a reload done now.
func reloadedAt() cty.Value {
	return cty.StringVal(time.Now().UTC().Format(time.RFC3339Nano))
}

// Summary implements Summarizer: the command run, or the process signalled
// and the signal, whichever way the reload was done. The outputs always
// hold all three, so the empty ones say which way it was.
func (*Reload) Summary(outputs cty.Value) []Fact {
	if argv, ok := outputStrings(outputs, "command"); ok && len(argv) > 0 {
		return []Fact{{Name: "command", Value: command.Quote(argv)}}
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
	if b, ok := cfg.Block("expect"); ok {
		if given[0] == "command" {
			errs = append(errs, attrErr(cfg.Path("expect"), "only applies to pid_file and pid: rotplan runs the command, and signals no process it could check"))
		} else {
			e, err := reloadExpectation(b, cfg.Path("expect"))
			t.expect = e
			errs = append(errs, err)
		}
	}
	return t, joinErrors(errs...)
}

// reloadExpectation reads an expect block (at path). Whether the user
// exists is the host's to say, at CheckHost.
func reloadExpectation(b Config, path string) (reloadExpect, error) {
	var e reloadExpect
	var errs []error
	if !b.Set("executable") && !b.Set("name") && !b.Set("user") {
		return e, attrErr(path, "is empty: give executable, name or user, to say which process a signal may go to")
	}
	if b.Set("executable") {
		s, err := b.RequireString("executable")
		switch {
		case err != nil:
			errs = append(errs, err)
		case !filepath.IsAbs(s):
			errs = append(errs, attrErr(b.Path("executable"), "%q is not an absolute path: give the program's full path (or name = %q to check only its file name)", s, filepath.Base(s)))
		default:
			e.executable = filepath.Clean(s)
		}
	}
	if b.Set("name") {
		s, err := b.RequireString("name")
		switch {
		case err != nil:
			errs = append(errs, err)
		case strings.Contains(s, "/"):
			errs = append(errs, attrErr(b.Path("name"), "%q is a path: name is the program's file name (%q); a path goes in executable", s, filepath.Base(s)))
		default:
			e.name = s
		}
	}
	if b.Set("user") {
		s, err := b.RequireString("user")
		e.user = s
		errs = append(errs, err)
	}
	return e, joinErrors(errs...)
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

// readPIDFile reads the process id from a pid file, and returns what fstat
// says of the file it read. Errors name the file but never quote what it
// holds: a path given by mistake may name a secret.
func readPIDFile(path string) (int, fs.FileInfo, error) {
	// Non-blocking: opening a named pipe would block until someone writes.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("reading pid file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, nil, fmt.Errorf("reading pid file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return 0, nil, fmt.Errorf("pid file %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPIDFileSize+1))
	if err != nil {
		return 0, nil, fmt.Errorf("reading pid file: %w", err)
	}
	pid, err := parsePIDFile(path, b)
	return pid, fi, err
}

// parsePIDFile reads the process id in b, what the pid file at path
// holds (up to one byte more than maxPIDFileSize). Errors never quote b.
func parsePIDFile(path string, b []byte) (int, error) {
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
