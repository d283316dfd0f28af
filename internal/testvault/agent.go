package testvault

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/rotplan/rotplan/internal/command"
	"github.com/rotplan/rotplan/internal/proc"
)

// unit supervises one long-running process as systemd supervises a unit:
// the harness is the process's parent (it reaps it, and the process gets
// SIGTERM when the harness dies, so none outlives a crashed test), and the
// restart command is a client that asks the harness, through a FIFO, to
// restart it. A restart command that killed and re-spawned the process
// itself would leave it orphaned: nothing would reap it (on this kind of
// test machine not even init) and nothing would stop it when a test panics.
// The apps' Vault Agents and the edge proxy's nginx are units. Vault's
// server is one only for its restart command: the harness manages that
// process itself (see handle).
type unit struct {
	what     string // "agent", "nginx": names the process in errors
	ctlPath  string // FIFO the restart command writes requests to
	pidFile  string // written by the harness when writePID, else by the process
	logPath  string // the process's stdout and stderr
	writePID bool
	command  func() *exec.Cmd                      // a new process, not started
	ready    func(context.Context, *process) error // nil, or waits until the new process serves
	reload   func(context.Context, *process) error // nil: the unit has no reload action
	// handle, when not nil, serves the restart command's requests instead
	// of do: the unit then only listens (listen, writeCommand, close) and
	// its owner manages the process.
	handle func(ctx context.Context, action string) (pid int, err error)

	mu      sync.Mutex // serialises start, stop and restart
	proc    *process
	closed  bool
	ctl     *os.File
	done    chan struct{} // closed when the request loop has returned
	logFile *os.File
}

// newAgent returns the unit of app a's Vault Agent.
func newAgent(a *App) *unit {
	return &unit{
		what:     "agent",
		ctlPath:  strings.TrimSuffix(a.PIDFile, ".pid") + ".ctl",
		pidFile:  a.PIDFile,
		logPath:  a.LogFile,
		writePID: true,
		command:  a.agentCommand,
		done:     make(chan struct{}),
	}
}

// Start starts the app's agent; it is an error when it runs already.
func (a *App) Start(ctx context.Context) error {
	if _, err := a.agent.do(ctx, "start"); err != nil {
		return fmt.Errorf("testvault: app %s: %w", a.Name, err)
	}
	return nil
}

// Stop stops the app's agent (SIGTERM; SIGKILL after 10s) and waits for it
// to exit. Stopping an agent that does not run (also after [Vault.Stop]) is
// not an error.
func (a *App) Stop() error {
	if _, err := a.agent.do(context.Background(), "stop"); err != nil {
		return fmt.Errorf("testvault: app %s: %w", a.Name, err)
	}
	return nil
}

// Restart stops the app's agent (when it runs) and starts a new process
// with the same configuration; it returns the new pid. The agent logs in
// anew: see [App.WaitToken].
func (a *App) Restart(ctx context.Context) (pid int, err error) {
	pid, err = a.agent.do(ctx, "restart")
	if err != nil {
		return 0, fmt.Errorf("testvault: app %s: %w", a.Name, err)
	}
	return pid, nil
}

// PID returns the pid of the app's running agent, 0 when none runs.
func (a *App) PID() int { return a.agent.pid() }

// pid returns the pid of the running process, 0 when none runs.
func (ag *unit) pid() int {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	if !ag.running() {
		return 0
	}
	return ag.proc.PID()
}

// do runs action (start, stop, restart, reload) and returns the running
// process's pid.
func (ag *unit) do(ctx context.Context, action string) (int, error) {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	if ag.closed {
		if action == "stop" {
			return 0, nil // stopped with Vault already
		}
		return 0, fmt.Errorf("the harness has stopped the %s", ag.what)
	}
	switch action {
	case "start":
		if ag.running() {
			return 0, fmt.Errorf("%s runs already (pid %d)", ag.what, ag.proc.PID())
		}
		return ag.start(ctx)
	case "stop":
		return 0, ag.stop()
	case "restart":
		if err := ag.stop(); err != nil {
			return 0, err
		}
		return ag.start(ctx)
	case "reload":
		if ag.reload == nil {
			break
		}
		if !ag.running() {
			return 0, fmt.Errorf("%s is not running", ag.what)
		}
		return ag.proc.PID(), ag.reload(ctx, ag.proc)
	}
	return 0, fmt.Errorf("unknown action %q", action)
}

func (ag *unit) running() bool {
	if ag.proc == nil {
		return false
	}
	select {
	case <-ag.proc.Done():
		return false
	default:
		return true
	}
}

// start starts a new process and waits until it is ready; ag.mu is held.
func (ag *unit) start(ctx context.Context) (int, error) {
	if ag.logFile == nil {
		f, err := os.OpenFile(ag.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return 0, err
		}
		ag.logFile = f
	}
	cmd := ag.command()
	cmd.Stdout = ag.logFile
	cmd.Stderr = ag.logFile
	p, err := proc.Spawn(cmd)
	if err != nil {
		return 0, fmt.Errorf("starting the %s: %w", ag.what, err)
	}
	ag.proc = p
	pid := cmd.Process.Pid
	if ag.writePID {
		if err := writeFileOwned(ag.pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644, os.Geteuid(), os.Getegid()); err != nil {
			return 0, err
		}
	}
	if ag.ready != nil {
		if err := ag.ready(ctx, p); err != nil {
			return 0, fmt.Errorf("the %s (pid %d) did not become ready: %w (see %s)", ag.what, pid, err, ag.logPath)
		}
	}
	return pid, nil
}

// agentCommand returns the command that runs the app's agent as the app
// user.
func (a *App) agentCommand() *exec.Cmd {
	cmd := exec.Command(a.v.binary, "agent", "-config="+a.AgentConfig)
	cmd.Dir = a.Home
	// The cert method builds its own client from its config and the
	// environment: without VAULT_TLS_SERVER_NAME it would not send the
	// listener's name.
	cmd.Env = append(userEnv(a.Home, a.User), "VAULT_TLS_SERVER_NAME="+a.v.ServerName)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,
		Pdeathsig: syscall.SIGTERM, // no agent outlives the harness
		Credential: &syscall.Credential{
			Uid:    uint32(a.UID),
			Gid:    uint32(a.GID),
			Groups: []uint32{uint32(a.GID)},
		},
	}
	return cmd
}

// stop stops the process; ag.mu is held. What is left of its process
// group (an nginx master's workers, when the master was killed) is killed
// too.
func (ag *unit) stop() error {
	p := ag.proc
	ag.proc = nil
	if ag.writePID {
		_ = os.Remove(ag.pidFile)
	}
	if p == nil {
		return nil
	}
	var err error
	select {
	case <-p.Done(): // it had exited (its log says why); nothing to stop
	default:
		err = p.Terminate(ag.what, stopTimeout)
	}
	_ = syscall.Kill(-p.PID(), syscall.SIGKILL)
	return err
}

// listen creates the FIFO the restart command writes to and serves its
// requests, one at a time, until close.
func (ag *unit) listen() error {
	_ = os.Remove(ag.ctlPath)
	if err := syscall.Mkfifo(ag.ctlPath, 0o600); err != nil {
		return fmt.Errorf("restart FIFO %s: %w", ag.ctlPath, err)
	}
	// Read-write, so that the FIFO never reports end of file between
	// requests and opening it never blocks.
	f, err := os.OpenFile(ag.ctlPath, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("restart FIFO %s: %w", ag.ctlPath, err)
	}
	ag.mu.Lock()
	ag.ctl = f
	ag.mu.Unlock()
	go func() {
		defer close(ag.done)
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			action, reply, _ := strings.Cut(sc.Text(), " ")
			ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
			do := ag.do
			if ag.handle != nil {
				do = ag.handle
			}
			pid, err := do(ctx, action)
			cancel()
			answer := "ok " + strconv.Itoa(pid)
			if err != nil {
				answer = "error " + strings.ReplaceAll(err.Error(), "\n", " ")
			}
			answerRequest(reply, answer)
		}
	}()
	return nil
}

// answerRequest writes answer to the restart command's reply FIFO, if it
// is one and the command still waits on it.
func answerRequest(reply, answer string) {
	fi, err := os.Lstat(reply)
	if err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		return
	}
	f, err := os.OpenFile(reply, os.O_WRONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = f.WriteString(answer + "\n")
}

// close ends the request loop, stops the agent and removes the FIFO; later
// requests fail.
func (ag *unit) close() error {
	ag.mu.Lock()
	ag.closed = true
	ctl := ag.ctl
	ag.ctl = nil
	err := ag.stop()
	if ag.logFile != nil {
		ag.logFile.Close()
		ag.logFile = nil
	}
	ag.mu.Unlock()
	if ctl != nil {
		ctl.Close()
		<-ag.done
	}
	_ = os.Remove(ag.ctlPath)
	return err
}

// writeAgentConfig writes the agent's configuration: the vault stanza for
// the mTLS production listener (the listener requires a client certificate
// on every connection, so the agent presents its login certificate there
// too), cert auto-auth with the app's files and mapping, and a file sink.
func (a *App) writeAgentConfig() error {
	q := make(map[string]string)
	for k, p := range map[string]string{
		"ca": a.CAFile, "cert": a.CertFile, "key": a.KeyFile, "sink": a.SinkFile,
	} {
		s, err := hclQuote(p)
		if err != nil {
			return err
		}
		q[k] = s
	}
	var b strings.Builder
	// Both the vault stanza and the cert method name the same three files.
	tlsFiles := func(indent, pad string) {
		fmt.Fprintf(&b, "%sca_cert    %s= %s\n", indent, pad, q["ca"])
		fmt.Fprintf(&b, "%sclient_cert%s= %s\n", indent, pad, q["cert"])
		fmt.Fprintf(&b, "%sclient_key %s= %s\n", indent, pad, q["key"])
	}
	fmt.Fprintf(&b, "# Vault Agent of app %s (rotplan test harness, internal/testvault); generated, do not edit.\n", a.Name)
	fmt.Fprintf(&b, "exit_after_auth = false\n\n")
	fmt.Fprintf(&b, "vault {\n")
	fmt.Fprintf(&b, "  address         = \"%s\"\n", a.v.Addr)
	fmt.Fprintf(&b, "  tls_server_name = \"%s\"\n", a.v.ServerName)
	tlsFiles("  ", "     ")
	fmt.Fprintf(&b, "}\n\n")
	fmt.Fprintf(&b, "auto_auth {\n")
	fmt.Fprintf(&b, "  method \"cert\" {\n")
	fmt.Fprintf(&b, "    mount_path = \"auth/cert\"\n")
	fmt.Fprintf(&b, "    config = {\n")
	fmt.Fprintf(&b, "      name        = \"%s\"\n", a.Mapping)
	tlsFiles("      ", " ")
	fmt.Fprintf(&b, "    }\n")
	fmt.Fprintf(&b, "  }\n\n")
	fmt.Fprintf(&b, "  sink \"file\" {\n")
	fmt.Fprintf(&b, "    config = {\n")
	fmt.Fprintf(&b, "      path = %s\n", q["sink"])
	fmt.Fprintf(&b, "    }\n")
	fmt.Fprintf(&b, "  }\n")
	fmt.Fprintf(&b, "}\n")
	return writeFileOwned(a.AgentConfig, []byte(b.String()), 0o644, os.Geteuid(), os.Getegid())
}

// writeRestartCommand writes the app's restart command.
func (a *App) writeRestartCommand() error {
	return a.agent.writeCommand(a.RestartCommand, []string{
		fmt.Sprintf("restart the Vault Agent of app %s (user %s, configuration", a.Name, a.User),
		fmt.Sprintf("%s), as `systemctl --user restart` restarts a user unit.", a.AgentConfig),
		"Generated by the rotplan test harness (internal/testvault), which supervises",
		"the agent: this command asks it through a FIFO and exits 0 once the new",
		"agent process runs (it may not have logged in yet). Needs root.",
	})
}

// writeCommand writes the unit's control command (bash) to path: it asks
// the harness through the FIFO to restart (start, stop) the process and
// exits 0 once that is done (reload too, when the unit has one); about is
// its header comment after the name.
func (ag *unit) writeCommand(path string, about []string) error {
	name := filepath.Base(path)
	var b strings.Builder
	fmt.Fprintf(&b, "#!/bin/bash\n")
	for i, line := range about {
		if i == 0 {
			line = name + ": " + line
		}
		fmt.Fprintf(&b, "# %s\n", line)
	}
	actions := "restart|start|stop"
	if ag.reload != nil {
		actions += "|reload"
	}
	fmt.Fprintf(&b, "# Usage: %s [%s]\n", name, actions)
	fmt.Fprintf(&b, "set -u\n")
	fmt.Fprintf(&b, "action=${1:-restart}\n")
	fmt.Fprintf(&b, "case $action in %s) ;; *) echo \"usage: $0 [%s]\" >&2; exit 2 ;; esac\n", actions, actions)
	fmt.Fprintf(&b, "ctl=%s\n", command.ShellWord(ag.ctlPath))
	fmt.Fprintf(&b, "if [ ! -p \"$ctl\" ]; then echo \"$0: $ctl is missing: the test harness that supervises the %s is not running\" >&2; exit 1; fi\n", ag.what)
	fmt.Fprintf(&b, "tmp=$(mktemp -d) || exit 1\n")
	fmt.Fprintf(&b, "trap 'rm -rf \"$tmp\"' EXIT\n")
	fmt.Fprintf(&b, "mkfifo -m 600 \"$tmp/reply\" || exit 1\n")
	fmt.Fprintf(&b, "exec 3<>\"$tmp/reply\"\n")
	fmt.Fprintf(&b, "if ! timeout 10 bash -c 'printf \"%%s %%s\\n\" \"$1\" \"$2\" >\"$3\"' _ \"$action\" \"$tmp/reply\" \"$ctl\"; then\n")
	fmt.Fprintf(&b, "  echo \"$0: the harness does not answer on $ctl\" >&2; exit 1\n")
	fmt.Fprintf(&b, "fi\n")
	fmt.Fprintf(&b, "if ! read -r -t 90 status rest <&3; then echo \"$0: no answer from the harness within 90s\" >&2; exit 1; fi\n")
	fmt.Fprintf(&b, "if [ \"$status\" != ok ]; then echo \"$0: $action: $rest\" >&2; exit 1; fi\n")
	return writeFileOwned(path, []byte(b.String()), 0o755, os.Geteuid(), os.Getegid())
}
