package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/rotplan/rotplan/internal/command"
	"github.com/rotplan/rotplan/internal/remote"
	"github.com/zclconf/go-cty/cty"
)

// What a reload does when its step has `on`: the command runs on that
// host (remote.Conn.Run: its exit status and the end of its standard
// error in the error, as locally); a signal goes to the process the pid
// file on the host names, sent there with kill(1) once the process
// passed, on the host, the local checks: it is there
// and no zombie (its /proc read over SFTP), the pid file is writable by
// its owner alone and owned by root or the process's user, expect's
// executable, name and user (looked up there with id -u) match, and it
// is the process the run found first or a restart of it, judged by the
// host's own boot (boot_id and btime read from its /proc: a start time
// counts from that host's boot, and one of an earlier boot names no
// process of this one). What a host cannot give: a pidfd; instead the
// kill is pinned, in the same command on the host, to the vetted
// process's pid, start time and boot (signalOnHost). The pid argument,
// which names a process where rotplan runs, is refused.

// remoteProcLimit bounds what is read of a /proc file on a host.
const remoteProcLimit = 64 << 10

// checkReloadRemote is Reload.CheckHost on the step's host.
func checkReloadRemote(ctx context.Context, env *Env, cfg Config) error {
	t, err := parseRemoteReload(cfg)
	if err != nil {
		return err
	}
	return env.onHost(ctx, func(c *remote.Conn) error {
		if len(t.command) > 0 {
			if err := remoteLookPath(ctx, c, t.command[0]); err != nil {
				return attrErr(cfg.Path("command"), "%v", err)
			}
			return nil
		}
		_, err := t.findRemote(ctx, env, c, cfg, nil)
		return err
	})
}

// remoteLookPath reports a program the host does not have, found as its
// shell would find it (command -v).
func remoteLookPath(ctx context.Context, c *remote.Conn, program string) error {
	if _, err := c.Run(ctx, []string{"sh", "-c", `command -v -- "$1" >/dev/null`, "sh", program}); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("cannot run %s on %s: not found there", program, c.Host())
	}
	return nil
}

// parseRemoteReload is parseReload for a host: pid is refused.
func parseRemoteReload(cfg Config) (reloadTarget, error) {
	t, err := parseReload(cfg)
	if err == nil && t.pidFile == "" && len(t.command) == 0 {
		err = attrErr(cfg.Path("pid"), "a reload on a host takes pid_file or command, not pid")
	}
	return t, err
}

// findRemote reads the pid file on the host and vets its process there
// (see vet for what, and why).
func (t reloadTarget) findRemote(ctx context.Context, env *Env, c *remote.Conn, cfg Config, was *process) (target, error) {
	tg := target{arg: "pid_file", from: fmt.Sprintf(" (from %s on %s)", t.pidFile, c.Host())}
	arg := cfg.Path(tg.arg)
	fi, err := c.Lstat(ctx, t.pidFile)
	switch {
	case err != nil:
		return tg, attrErr(arg, "reading pid file: %v", err)
	case !fi.Mode().IsRegular():
		return tg, attrErr(arg, "pid file %s on %s is not a regular file", t.pidFile, c.Host())
	}
	b, err := c.ReadFile(ctx, t.pidFile, maxPIDFileSize)
	if err != nil {
		return tg, attrErr(arg, "reading pid file: %v", err)
	}
	if tg.pid, err = parsePIDFile(t.pidFile, b); err != nil {
		return tg, attrErr(arg, "%v on %s", err, c.Host())
	}
	readFile := func(p string) ([]byte, error) { return c.ReadFile(ctx, p, remoteProcLimit) }
	readLink := func(p string) (string, error) {
		res, err := c.Run(ctx, []string{"readlink", "--", p})
		return strings.TrimSuffix(string(res.Stdout), "\n"), err
	}
	p, err := readProcessWith(tg.pid, readFile, readLink)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || err.Error() == "no such process" {
			return tg, attrErr(arg, "no process has pid %d%s: the service is not running, or the pid file is stale", tg.pid, tg.from)
		}
		return tg, attrErr(arg, "pid %d%s: %v", tg.pid, tg.from, err)
	}
	tg.process = p
	uid, _, ok := remote.Owner(fi)
	if err := pidFileWriters(t.pidFile, fi.Mode(), uid, ok, p); err != nil {
		return tg, attrErr(arg, "%v on %s", err, c.Host())
	}
	resolve := func(p string) string {
		if res, err := c.Run(ctx, []string{"readlink", "-f", "--", p}); err == nil {
			return strings.TrimSuffix(string(res.Stdout), "\n")
		}
		return p
	}
	lookup := func(name string) (int, error) {
		if isDigits(name) {
			return parseID(name)
		}
		res, err := c.Run(ctx, []string{"id", "-u", "--", name})
		if err != nil {
			return 0, fmt.Errorf("no user %q on %s", name, c.Host())
		}
		return parseID(strings.TrimSpace(string(res.Stdout)))
	}
	if err := t.expect.check(cfg, tg, resolve, lookup); err != nil {
		return tg, err
	}
	host, _ := env.Host()
	return t.sameAsFirst(env, cfg, tg, host, was)
}

// pinnedKill sends signal $3 to pid $1 only if the process with that pid
// is the one vetted: its start ($2, /proc/PID/stat's field 22, read past
// the last ")" since the name may hold anything) in this boot of the host
// ($4, boot_id). Refusals exit 3, naming why, and send nothing.
const pinnedKill = `pid=$1 start=$2 sig=$3 boot=$4
if [ -n "$boot" ] && [ "$(cat /proc/sys/kernel/random/boot_id)" != "$boot" ]; then
	echo "the host rebooted since the process was checked" >&2; exit 3
fi
st=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo "the process has exited" >&2; exit 3; }
set -- ${st##*") "}
if [ "${20}" != "$start" ]; then
	echo "the process has exited, and another one has its pid" >&2; exit 3
fi
exec kill -s "$sig" "$pid"`

// signalOnHost sends sig to p on the host, pinned: in the same command,
// on the host, the process with p's pid must still have p's start time in
// p's boot (pinnedKill). A host gives no pidfd over SSH; this leaves the
// instant between the check and kill(2) on the host, not the round trips
// between rotplan's checks and the signal.
func signalOnHost(ctx context.Context, c *remote.Conn, p process, sig string) error {
	_, err := c.Run(ctx, []string{"sh", "-c", pinnedKill, "rotplan-kill", strconv.Itoa(p.pid), strconv.FormatUint(p.start, 10), sig, p.bootID})
	var exit *remote.ExitError
	if errors.As(err, &exit) && exit.Status == 3 {
		return fmt.Errorf("refusing to signal it: %s", exit.Stderr)
	}
	return err
}

// reloadRemote is reload on the step's host.
func (t reloadTarget) reloadRemote(ctx context.Context, env *Env, cfg Config, was *process) (out cty.Value, err error) {
	host, _ := env.Host()
	sent := false // the command or the signal went to the host
	err = env.onHost(ctx, func(c *remote.Conn) error {
		if len(t.command) > 0 {
			rctx, cancel := context.WithTimeout(ctx, t.timeout)
			defer cancel()
			sent = true
			res, err := c.Run(rctx, t.command)
			if err != nil {
				if rctx.Err() != nil && ctx.Err() == nil {
					return fmt.Errorf("command %s on %s timed out after %s", command.Quote(t.command), c.Host(), t.timeout)
				}
				return err
			}
			env.Log.Debug("ran reload command", "host", host, "command", t.command, "output", strings.TrimSpace(string(res.Stdout)))
			out = reloadOutputs(0, "", cty.ListVal(stringValues(t.command)), reloadedAt())
			return nil
		}
		tg, err := t.findRemote(ctx, env, c, cfg, was)
		if err != nil {
			return err
		}
		sent = true
		if err := signalOnHost(ctx, c, tg.process, strings.TrimPrefix(t.sigName, "SIG")); err != nil {
			return attrErr(cfg.Path(tg.arg), "signalling pid %d%s: %v", tg.pid, tg.from, err)
		}
		env.Log.Debug("sent signal", "host", host, "pid", tg.pid, "signal", t.sigName, "pid_file", t.pidFile, "executable", tg.exe, "uid", tg.uid)
		out = reloadOutputs(tg.pid, t.sigName, cty.ListValEmpty(cty.String), reloadedAt())
		return nil
	})
	var lost *remote.LostError
	if err != nil && sent && errors.As(err, &lost) {
		// The host may have reloaded before it stopped answering: the
		// rollback reloads again once the files are restored, so that
		// the service has the files it finds there.
		return cty.NilVal, &UnsettledError{Err: err}
	}
	if err != nil {
		return cty.NilVal, err
	}
	return out, nil
}

// planRemote is find on the step's host: the process a signal would go
// to, vetted.
func (t reloadTarget) planRemote(ctx context.Context, env *Env, cfg Config) (tg target, err error) {
	err = env.onHost(ctx, func(c *remote.Conn) error {
		tg, err = t.findRemote(ctx, env, c, cfg, nil)
		return err
	})
	return tg, err
}

// snapshotRemote is Reload.Snapshot on the step's host.
func (t reloadTarget) snapshotRemote(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	tg, err := t.planRemote(ctx, env, cfg)
	if err != nil {
		return nil, err
	}
	return tg.record(), nil
}
