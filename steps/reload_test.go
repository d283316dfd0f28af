package steps

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/command"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// reloadHelperEnv, when set to a directory, turns the test binary into the
// service a reload signals (see TestReloadHelperProcess).
const reloadHelperEnv = "ROTPLAN_RELOAD_HELPER_DIR"

// TestReloadHelperProcess is not a test: run by startReloadHelper as a child
// process, it stands in for a service. It writes its pid file once it is
// ready for signals, and records in the file "got" the first signal it
// receives.
func TestReloadHelperProcess(t *testing.T) {
	dir := os.Getenv(reloadHelperEnv)
	if dir == "" {
		t.Skip("helper process for the reload tests; runs only when started by them")
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	// The pid file appears all at once: a half-written one must not be read.
	tmp := filepath.Join(dir, ".helper.pid")
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		os.Exit(2)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "helper.pid")); err != nil {
		os.Exit(2)
	}
	select {
	case sig := <-ch:
		tmp := filepath.Join(dir, ".got")
		if err := os.WriteFile(tmp, []byte(sig.String()), 0o644); err != nil {
			os.Exit(2)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "got")); err != nil {
			os.Exit(2)
		}
		os.Exit(0)
	case <-time.After(30 * time.Second):
		os.Exit(3)
	}
}

// startReloadHelper starts a service stand-in and returns its directory and
// the path of its pid file, once that file is written.
func startReloadHelper(t *testing.T) (cmd *exec.Cmd, dir, pidFile string) {
	t.Helper()
	dir = t.TempDir()
	cmd = exec.Command(os.Args[0], "-test.run=^TestReloadHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), reloadHelperEnv+"="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	go func() { cmd.Wait(); close(done) }()

	pidFile = filepath.Join(dir, "helper.pid")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(pidFile); err == nil {
			return cmd, dir, pidFile
		}
		select {
		case <-done:
			t.Fatalf("helper process exited before writing its pid file: %v", cmd.ProcessState)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("helper process wrote no pid file within 10s")
		}
	}
}

// waitForSignal returns what the helper process recorded, or "" if it
// recorded nothing within a few seconds.
func waitForSignal(t *testing.T, dir string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(filepath.Join(dir, "got")); err == nil {
			return string(b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return ""
}

func applyReload(t *testing.T, vals map[string]cty.Value) (cty.Value, string, error) {
	t.Helper()
	cfg := testConfig(t, (*Reload)(nil).Spec(), vals)
	if err := (*Reload)(nil).Validate(cfg); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	env, logs := testEnv(t)
	out, err := (*Reload)(nil).Apply(context.Background(), env, cfg)
	if err == nil {
		wantOutputs(t, (*Reload)(nil), out)
	}
	return out, logs.String(), err
}

func TestReloadSignal(t *testing.T) {
	tests := []struct {
		name    string
		byPID   bool // pid rather than pid_file
		signal  cty.Value
		want    string // as the helper records it
		wantSig string // the signal output
	}{
		{"pid file, default SIGHUP", false, cty.NullVal(cty.String), "hangup", "SIGHUP"},
		{"pid file, hup", false, cty.StringVal("hup"), "hangup", "SIGHUP"},
		{"pid file, USR1", false, cty.StringVal("USR1"), "user defined signal 1", "SIGUSR1"},
		{"pid, SIGUSR2", true, cty.StringVal("SIGUSR2"), "user defined signal 2", "SIGUSR2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, dir, pidFile := startReloadHelper(t)
			vals := map[string]cty.Value{"signal": tt.signal}
			if tt.byPID {
				vals["pid"] = cty.NumberIntVal(int64(cmd.Process.Pid))
			} else {
				vals["pid_file"] = cty.StringVal(pidFile)
			}
			out, _, err := applyReload(t, vals)
			if err != nil {
				t.Fatal(err)
			}
			if got := waitForSignal(t, dir); got != tt.want {
				t.Errorf("the process received %q, want %q", got, tt.want)
			}
			want := cty.ObjectVal(map[string]cty.Value{
				"pid":     cty.NumberIntVal(int64(cmd.Process.Pid)),
				"signal":  cty.StringVal(tt.wantSig),
				"command": cty.ListValEmpty(cty.String),
			})
			if out = reloadedNow(t, out); !out.RawEquals(want) {
				t.Errorf("outputs are %#v, want %#v", out, want)
			}
		})
	}
}

// reloadedNow checks a reload's at output, when it was done: a time in
// RFC 3339 with nanoseconds, in UTC, not in the future. It returns the
// other outputs, for the caller to compare.
func reloadedNow(t *testing.T, out cty.Value) cty.Value {
	t.Helper()
	if out == cty.NilVal || out.IsNull() || !out.Type().HasAttribute("at") {
		t.Fatalf("outputs %#v have no at", out)
	}
	at := out.GetAttr("at")
	if at.IsNull() || !at.IsKnown() {
		t.Fatalf("at is %#v", at)
	}
	when, err := time.Parse(time.RFC3339Nano, at.AsString())
	if err != nil || !strings.HasSuffix(at.AsString(), "Z") || when.After(time.Now()) {
		t.Errorf("at %q is not a time in RFC 3339, in UTC, before now (%v)", at.AsString(), err)
	}
	rest := out.AsValueMap()
	delete(rest, "at")
	return cty.ObjectVal(rest)
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func TestReloadPIDFileErrors(t *testing.T) {
	dead := deadPID(t)
	tests := []struct {
		name    string
		content string // "" with noFile: no pid file at all
		noFile  bool
		want    []string // besides the file's path
	}{
		{"dead process", strconv.Itoa(dead) + "\n", false, []string{fmt.Sprintf("no process with pid %d", dead)}},
		{"garbage", "not-a-pid-secret-ish\n", false, []string{"does not hold a process id"}},
		{"empty", "", false, []string{"empty"}},
		{"blank lines", "\n \n", false, []string{"empty"}},
		{"zero", "0\n", false, []string{"does not hold a process id"}},
		{"negative", "-1\n", false, []string{"does not hold a process id"}},
		{"two pids", "12 13\n", false, []string{"does not hold a process id"}},
		{"too large", strings.Repeat("1", 100), false, []string{"too large"}},
		{"missing", "", true, []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "svc.pid")
			if !tt.noFile {
				if err := os.WriteFile(pidFile, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			_, _, err := applyReload(t, map[string]cty.Value{"pid_file": cty.StringVal(pidFile)})
			wantErrContains(t, err, append([]string{pidFile}, tt.want...)...)
			if tt.content != "" && strings.Contains(err.Error(), "secret-ish") {
				t.Errorf("error %q quotes the file", err)
			}
		})
	}
}

func TestReloadPIDFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "svc.pid")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := applyReload(t, map[string]cty.Value{"pid_file": cty.StringVal(fifo)})
		done <- err
	}()
	select {
	case err := <-done:
		wantErrContains(t, err, fifo, "not a regular file")
	case <-time.After(5 * time.Second):
		t.Fatal("reading a named pipe as pid file blocked")
	}
}

func TestReloadDeadPID(t *testing.T) {
	dead := deadPID(t)
	_, _, err := applyReload(t, map[string]cty.Value{"pid": cty.NumberIntVal(int64(dead))})
	wantErrContains(t, err, fmt.Sprintf("no process with pid %d", dead))
}

func TestReloadCommand(t *testing.T) {
	tests := []struct {
		name     string
		command  []string
		timeout  cty.Value
		wantErr  []string // nil: success
		maxTime  time.Duration
		wantLogs string
	}{
		{name: "true", command: []string{"/bin/true"}, maxTime: 10 * time.Second},
		{name: "found in PATH", command: []string{"true"}, maxTime: 10 * time.Second},
		{name: "output logged", command: []string{"/bin/echo", "reloaded fine"}, maxTime: 10 * time.Second, wantLogs: "reloaded fine"},
		{
			name:    "failure with output",
			command: []string{"/bin/sh", "-c", "echo boom; echo bang >&2; exit 3"},
			wantErr: []string{"exit status 3", "boom", "bang", `/bin/sh -c "echo boom; echo bang >&2; exit 3"`},
			maxTime: 10 * time.Second,
		},
		{
			name:    "failure without output",
			command: []string{"/bin/false"},
			wantErr: []string{"exit status 1", "no output"},
			maxTime: 10 * time.Second,
		},
		{
			name:    "timeout",
			command: []string{"/bin/sleep", "30"},
			timeout: cty.StringVal("300ms"),
			wantErr: []string{"timed out after 300ms"},
			maxTime: 4 * time.Second,
		},
		{
			// sh forks sleep, which keeps the output pipe open: only
			// killing the whole process group ends the wait in time.
			name:    "timeout with a child holding the output open",
			command: []string{"/bin/sh", "-c", "echo started; sleep 30; echo never"},
			timeout: cty.StringVal("300ms"),
			wantErr: []string{"timed out after 300ms", "started"},
			maxTime: 4 * time.Second,
		},
		{
			name:    "long output keeps its end",
			command: []string{"/bin/sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line $i of noise; i=$((i+1)); done; echo the real reason; exit 1"},
			wantErr: []string{"the real reason", "[…]"},
			maxTime: 10 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out, logs, err := applyReload(t, map[string]cty.Value{
				"command": stringList(tt.command...),
				"timeout": tt.timeout,
			})
			if elapsed := time.Since(start); elapsed > tt.maxTime {
				t.Errorf("took %s, want at most %s", elapsed, tt.maxTime)
			}
			if tt.wantErr != nil {
				wantErrContains(t, err, tt.wantErr...)
				if n := len(err.Error()); n > command.OutputLimit+1024 {
					t.Errorf("error is %d bytes long; the output in it is not bounded", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := cty.ObjectVal(map[string]cty.Value{
				"pid":     cty.NumberIntVal(0),
				"signal":  cty.StringVal(""),
				"command": stringList(tt.command...),
			})
			if out = reloadedNow(t, out); !out.RawEquals(want) {
				t.Errorf("outputs are %#v, want %#v", out, want)
			}
			if !strings.Contains(logs, tt.wantLogs) {
				t.Errorf("log does not hold %q:\n%s", tt.wantLogs, logs)
			}
		})
	}
}

func TestReloadCommandInterrupted(t *testing.T) {
	cfg := testConfig(t, (*Reload)(nil).Spec(), map[string]cty.Value{
		"command": stringList("/bin/sleep", "30"),
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	env, _ := testEnv(t)
	start := time.Now()
	_, err := (*Reload)(nil).Apply(ctx, env, cfg)
	wantErrContains(t, err, "interrupted")
	if strings.Contains(err.Error(), "timed out") {
		t.Errorf("an interrupted run is reported as a timeout: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 4*time.Second {
		t.Errorf("took %s to stop", elapsed)
	}
}

func TestReloadValidate(t *testing.T) {
	tests := []struct {
		name     string
		vals     map[string]cty.Value
		wantPath string // "" for no error
		wantMsg  string
	}{
		{"pid_file that does not exist yet", map[string]cty.Value{"pid_file": cty.StringVal("/run/rotplan-test/none.pid")}, "", ""},
		{"pid", map[string]cty.Value{"pid": cty.NumberIntVal(1234), "signal": cty.StringVal("TERM")}, "", ""},
		{"command with timeout", map[string]cty.Value{"command": stringList("systemctl", "reload", "vault"), "timeout": cty.StringVal("90s")}, "", ""},
		{"unknown pid_file", map[string]cty.Value{"pid_file": cty.UnknownVal(cty.String)}, "", ""},
		{"unknown signal", map[string]cty.Value{"pid": cty.NumberIntVal(1), "signal": cty.UnknownVal(cty.String)}, "", ""},
		{"unknown command", map[string]cty.Value{"command": cty.UnknownVal(cty.List(cty.String))}, "", ""},
		{"none", map[string]cty.Value{}, "pid_file", "one of pid_file, pid or command"},
		{"pid_file and pid", map[string]cty.Value{"pid_file": cty.StringVal("/run/x.pid"), "pid": cty.NumberIntVal(12)}, "pid", "only one"},
		{"pid and command", map[string]cty.Value{"pid": cty.NumberIntVal(12), "command": stringList("/bin/true")}, "command", "only one"},
		{"pid_file and unknown command", map[string]cty.Value{"pid_file": cty.StringVal("/run/x.pid"), "command": cty.UnknownVal(cty.List(cty.String))}, "command", "only one"},
		{"bad signal", map[string]cty.Value{"pid": cty.NumberIntVal(12), "signal": cty.StringVal("SIGFOO")}, "signal", "USR1"},
		{"empty signal", map[string]cty.Value{"pid": cty.NumberIntVal(12), "signal": cty.StringVal("")}, "signal", "not a signal"},
		{"signal number", map[string]cty.Value{"pid": cty.NumberIntVal(12), "signal": cty.StringVal("1")}, "signal", "not a signal"},
		{"signal with command", map[string]cty.Value{"command": stringList("/bin/true"), "signal": cty.StringVal("HUP")}, "signal", "only applies"},
		{"timeout with pid", map[string]cty.Value{"pid": cty.NumberIntVal(12), "timeout": cty.StringVal("5s")}, "timeout", "only applies"},
		{"bad timeout", map[string]cty.Value{"command": stringList("/bin/true"), "timeout": cty.StringVal("soon")}, "timeout", "not a duration"},
		{"negative timeout", map[string]cty.Value{"command": stringList("/bin/true"), "timeout": cty.StringVal("-1s")}, "timeout", "positive"},
		{"empty command", map[string]cty.Value{"command": stringList()}, "command", "must not be empty"},
		{"empty program", map[string]cty.Value{"command": stringList("", "x")}, "command", "program name"},
		{"program not found", map[string]cty.Value{"command": stringList("rotplan-no-such-program")}, "command", "not found"},
		{"program path not found", map[string]cty.Value{"command": stringList("/nonexistent/reload")}, "command", "no such file"},
		{"pid 0", map[string]cty.Value{"pid": cty.NumberIntVal(0)}, "pid", "positive whole number"},
		{"pid -1", map[string]cty.Value{"pid": cty.NumberIntVal(-1)}, "pid", "positive whole number"},
		{"pid 1.5", map[string]cty.Value{"pid": cty.NumberFloatVal(1.5)}, "pid", "positive whole number"},
		{"pid too large", map[string]cty.Value{"pid": cty.NumberIntVal(1 << 40)}, "pid", "too large"},
		{"empty pid_file", map[string]cty.Value{"pid_file": cty.StringVal("")}, "pid_file", "empty"},
	}
	// Whether the program is there is the host's to say: CheckHost's.
	host := map[string]bool{"program not found": true, "program path not found": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, (*Reload)(nil).Spec(), tt.vals)
			err := (*Reload)(nil).Validate(cfg)
			fromHost := false
			if host[tt.name] {
				wantValid(t, err)
				env, _ := testEnv(t)
				err, fromHost = (*Reload)(nil).CheckHost(context.Background(), env, cfg), true
			}
			if tt.wantPath == "" {
				wantValid(t, err)
				return
			}
			wantFrom(t, fromHost, host[tt.name])
			msg := wantAttrErr(t, err, tt.wantPath)
			if !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q does not say %q", msg, tt.wantMsg)
			}
		})
	}
}

func TestReloadSignalNames(t *testing.T) {
	tests := []struct {
		in   string
		want syscall.Signal
	}{
		{"HUP", syscall.SIGHUP},
		{"SIGHUP", syscall.SIGHUP},
		{"hup", syscall.SIGHUP},
		{"sighup", syscall.SIGHUP},
		{"usr2", syscall.SIGUSR2},
		{"SIGTERM", syscall.SIGTERM},
		{"KILL", syscall.SIGKILL},
		{"QUIT", syscall.SIGQUIT},
		{"INT", syscall.SIGINT},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			cfg := testConfig(t, (*Reload)(nil).Spec(), map[string]cty.Value{"signal": cty.StringVal(tt.in)})
			got, name, err := reloadSignal(cfg)
			if err != nil || got != tt.want || name != "SIG"+strings.TrimPrefix(strings.ToUpper(tt.in), "SIG") {
				t.Fatalf("reloadSignal(%q) = %v, %q, %v; want %v", tt.in, got, name, err, tt.want)
			}
		})
	}
}

func TestReloadSummary(t *testing.T) {
	outputs := func(pid, signal, command cty.Value) cty.Value {
		return cty.ObjectVal(map[string]cty.Value{"pid": pid, "signal": signal, "command": command})
	}
	tests := []struct {
		name    string
		outputs cty.Value
		want    []Fact
	}{
		{"signal", outputs(cty.NumberIntVal(4242), cty.StringVal("SIGHUP"), stringList()),
			[]Fact{{"pid", "4242"}, {"signal", "SIGHUP"}}},
		{"command", outputs(cty.NumberIntVal(0), cty.StringVal(""), stringList("systemctl", "reload", "vault server")),
			[]Fact{{"command", `systemctl reload "vault server"`}}},
		{"null pid", outputs(cty.NullVal(cty.Number), cty.StringVal("SIGHUP"), cty.NullVal(cty.List(cty.String))),
			[]Fact{{"signal", "SIGHUP"}}},
		{"command with a null element", outputs(cty.NumberIntVal(0), cty.StringVal(""),
			cty.ListVal([]cty.Value{cty.StringVal("x"), cty.NullVal(cty.String)})), nil},
		{"unknown outputs", cty.UnknownVal(OutputType((*Reload)(nil))), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantFacts(t, (*Reload)(nil).Summary(tt.outputs), tt.want)
		})
	}
}

func TestReloadRollback(t *testing.T) {
	tests := []struct {
		name  string
		byPID bool
		// applyFirst: Apply signals one process, which then exits, and
		// another takes its place in the pid file before the rollback, as
		// when the service restarted in between.
		applyFirst bool
		signal     cty.Value
		want       string
	}{
		{"pid file, default SIGHUP", false, false, cty.NullVal(cty.String), "hangup"},
		{"pid file read again after a restart", false, true, cty.StringVal("USR2"), "user defined signal 2"},
		{"pid, USR1", true, false, cty.StringVal("SIGUSR1"), "user defined signal 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "svc.pid")
			service := func() (*exec.Cmd, string) {
				t.Helper()
				cmd, dir, _ := startReloadHelper(t)
				if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return cmd, dir
			}
			cmd, dir := service()
			vals := map[string]cty.Value{"pid_file": cty.StringVal(pidFile), "signal": tt.signal}
			if tt.byPID {
				vals = map[string]cty.Value{"pid": cty.NumberIntVal(int64(cmd.Process.Pid)), "signal": tt.signal}
			}
			cfg := testConfig(t, (*Reload)(nil).Spec(), vals)
			env, logs := testEnv(t)

			snap, err := (*Reload)(nil).Snapshot(context.Background(), env, cfg)
			if err != nil || snap["pid"] != strconv.Itoa(cmd.Process.Pid) || snap["start"] == "" || snap["exe"] == "" {
				t.Fatalf("Snapshot = %v, %v; want the pid, start time and executable of pid %d", snap, err, cmd.Process.Pid)
			}
			out := cty.NilVal
			if tt.applyFirst {
				if out, err = (*Reload)(nil).Apply(context.Background(), env, cfg); err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if got := waitForSignal(t, dir); got != tt.want {
					t.Fatalf("Apply: the process received %q, want %q", got, tt.want)
				}
				cmd, dir = service()
			}

			if err := (*Reload)(nil).Rollback(context.Background(), env, cfg, out, snap); err != nil {
				t.Fatalf("Rollback: %v", err)
			}
			if got := waitForSignal(t, dir); got != tt.want {
				t.Errorf("Rollback: the process received %q, want %q", got, tt.want)
			}
			if want := fmt.Sprintf("pid=%d", cmd.Process.Pid); !strings.Contains(logs.String(), "signalled the service again") || !strings.Contains(logs.String(), want) {
				t.Errorf("the log does not say which process was signalled again (%s):\n%s", want, logs)
			}
		})
	}
}

// TestReloadRollbackCommand checks that a rollback runs the command again,
// after Apply ran it once.
func TestReloadRollbackCommand(t *testing.T) {
	ran := filepath.Join(t.TempDir(), "ran")
	cfg := testConfig(t, (*Reload)(nil).Spec(), map[string]cty.Value{
		"command": stringList("/bin/sh", "-c", `echo reloaded >> "$0"`, ran),
	})
	env, logs := testEnv(t)
	out, err := (*Reload)(nil).Apply(context.Background(), env, cfg)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if err := (*Reload)(nil).Rollback(context.Background(), env, cfg, out, map[string]string{}); err != nil {
		t.Fatalf("Rollback: %v", err)
	}
	if got, _ := os.ReadFile(ran); string(got) != "reloaded\nreloaded\n" {
		t.Errorf("the command ran %d times, want twice (Apply, then Rollback)", strings.Count(string(got), "reloaded"))
	}
	if !strings.Contains(logs.String(), "ran the reload command again") {
		t.Errorf("the log does not say the command ran again:\n%s", logs)
	}
}

func TestReloadRollbackErrors(t *testing.T) {
	dead := deadPID(t)
	pidFile := filepath.Join(t.TempDir(), "svc pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(dead)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		vals map[string]cty.Value
		want []string
	}{
		{"dead pid", map[string]cty.Value{"pid": cty.NumberIntVal(int64(dead))},
			[]string{fmt.Sprintf("no process with pid %d", dead), fmt.Sprintf("reload the service by hand: check that pid %d is the service: ps -o pid,user,lstart,args -p %d; then: kill -s HUP %d", dead, dead, dead)}},
		{"pid file of a dead process", map[string]cty.Value{"pid_file": cty.StringVal(pidFile), "signal": cty.StringVal("usr1")},
			[]string{"no process with pid", fmt.Sprintf(`reload the service by hand: check that the process %s names is the service: ps -o pid,user,lstart,args -p "$(cat '%s')"; then: kill -s USR1 "$(cat '%s')"`, pidFile, pidFile, pidFile)}},
		{"failing command", map[string]cty.Value{"command": stringList("/bin/sh", "-c", "echo no such unit; exit 5")},
			[]string{"exit status 5", "no such unit", `reload the service by hand: /bin/sh -c 'echo no such unit; exit 5'`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, _ := testEnv(t)
			err := (*Reload)(nil).Rollback(context.Background(), env, testConfig(t, (*Reload)(nil).Spec(), tt.vals), cty.NilVal, map[string]string{})
			wantErrContains(t, err, append([]string{"reload: rolling back"}, tt.want...)...)
		})
	}
}

// expectBlock is the value of an expect block; "" leaves an argument out.
func expectBlock(executable, name, user string) cty.Value {
	arg := func(s string) cty.Value {
		if s == "" {
			return cty.NullVal(cty.String)
		}
		return cty.StringVal(s)
	}
	return cty.ObjectVal(map[string]cty.Value{"executable": arg(executable), "name": arg(name), "user": arg(user)})
}

// stranger returns a system user other than root and the test's own
// (rotplan-stranger, created when missing), to own files and run
// processes; it needs root.
func stranger(t *testing.T) (name string, uid, gid int) {
	t.Helper()
	requireRoot(t, "runs a process as, or gives a file to, another user")
	name, uid, gid, err := testvault.Stranger()
	if err != nil {
		t.Fatal(err)
	}
	return name, uid, gid
}

// startSleep starts /bin/sleep, a process a SIGHUP kills, as the user cred
// says (nil: as the test), and writes its pid into a pid file (0644, the
// test's) whose path it returns.
func startSleep(t *testing.T, cred *syscall.Credential) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	pidFile := filepath.Join(t.TempDir(), "svc.pid")
	writePIDFile(t, pidFile, cmd.Process.Pid)
	return cmd, pidFile
}

// writePIDFile makes pidFile name pid, as a service's restart does.
func writePIDFile(t *testing.T, pidFile string, pid int) {
	t.Helper()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// wantEndedBy sends cmd's process SIGTERM, waits for it, and fails the
// test unless it ended of sig: SIGHUP when the reload signalled it (a
// pending SIGHUP is delivered before SIGTERM, the lower number first),
// SIGTERM when it was spared.
func wantEndedBy(t *testing.T, cmd *exec.Cmd, sig syscall.Signal) {
	t.Helper()
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != sig {
		t.Errorf("pid %d ended with %s, want killed by %s", cmd.Process.Pid, cmd.ProcessState, sig)
	}
}

// wantRefused fails the test unless a reload of cfg is refused, at path
// with msg, by CheckHost, by Plan and by Apply alike.
func wantRefused(t *testing.T, env *Env, cfg Config, path, msg string) {
	t.Helper()
	ctx := context.Background()
	if err := (*Reload)(nil).CheckHost(ctx, env, cfg); !strings.Contains(wantAttrErr(t, err, path), msg) {
		t.Errorf("CheckHost: %q does not say %q", err, msg)
	}
	pv, err := (*Reload)(nil).Plan(ctx, env, cfg)
	if err != nil || len(pv.Problems) != 1 || !strings.Contains(wantAttrErr(t, pv.Problems[0], path), msg) {
		t.Errorf("Plan = %v, problems %v; want the refusal %q as its problem", err, pv.Problems, msg)
	}
	_, err = (*Reload)(nil).Apply(ctx, env, cfg)
	if !strings.Contains(wantAttrErr(t, err, path), msg) {
		t.Errorf("Apply: %q does not say %q", err, msg)
	}
}

// wantReloadOf fails the test unless a reload of cfg signals cmd's
// process or, when path is given, is refused there with msg, by CheckHost,
// Plan and Apply alike, and spares the process.
func wantReloadOf(t *testing.T, env *Env, cfg Config, cmd *exec.Cmd, path, msg string) {
	t.Helper()
	if path != "" {
		wantRefused(t, env, cfg, path, msg)
		wantEndedBy(t, cmd, syscall.SIGTERM)
		return
	}
	if err := (*Reload)(nil).CheckHost(context.Background(), env, cfg); err != nil {
		t.Fatalf("CheckHost: %v", err)
	}
	if _, err := (*Reload)(nil).Apply(context.Background(), env, cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	wantEndedBy(t, cmd, syscall.SIGHUP)
}

func TestReloadExpect(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		stranger bool // the process runs as another user (needs root)
		expect   cty.Value
		wantPath string // "": the process is signalled
		wantMsg  string
	}{
		{name: "executable", expect: expectBlock("/bin/sleep", "", "")},
		{name: "name", expect: expectBlock("", "sleep", "")},
		{name: "user", expect: expectBlock("", "", me.Username)},
		{name: "all three", expect: expectBlock("/bin/sleep", "sleep", me.Uid)},
		{name: "other user, as expected", stranger: true, expect: expectBlock("", "sleep", "rotplan-stranger")},
		{name: "executable differs", expect: expectBlock("/usr/local/bin/vault", "", ""),
			wantPath: "expect.executable", wantMsg: "sleep, not /usr/local/bin/vault: refusing to signal it"},
		{name: "name differs", expect: expectBlock("", "vault", ""),
			wantPath: "expect.name", wantMsg: `is "sleep" (`},
		{name: "user differs", expect: expectBlock("", "sleep", "nobody"),
			wantPath: "expect.user", wantMsg: "not uid 65534 (nobody)"},
		{name: "other user, not expected", stranger: true, expect: expectBlock("", "", "root"),
			wantPath: "expect.user", wantMsg: "(rotplan-stranger), not uid 0 (root)"},
		{name: "no such user", expect: expectBlock("", "", "rotplan-no-such-user"),
			wantPath: "expect.user", wantMsg: `no such user "rotplan-no-such-user"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cred *syscall.Credential
			if tt.stranger {
				_, uid, gid := stranger(t)
				cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
			}
			cmd, pidFile := startSleep(t, cred)
			cfg := testConfig(t, (*Reload)(nil).Spec(), map[string]cty.Value{"pid_file": cty.StringVal(pidFile), "expect": tt.expect})
			wantValid(t, (*Reload)(nil).Validate(cfg))
			env, _ := testEnv(t)
			wantReloadOf(t, env, cfg, cmd, tt.wantPath, tt.wantMsg)
		})
	}
}

// TestReloadPIDFileWriters: by default, a pid file may name a process only
// if no one but root and the process's own user can have written it.
func TestReloadPIDFileWriters(t *testing.T) {
	tests := []struct {
		name         string
		mode         os.FileMode
		fileStranger bool // the pid file belongs to another user
		procStranger bool // so does the process
		wantMsg      string
	}{
		{name: "root's, 0644", mode: 0o644},
		{name: "owner only", mode: 0o600},
		{name: "group writable", mode: 0o664, wantMsg: "writable by group or others (mode 0664)"},
		{name: "world writable", mode: 0o646, wantMsg: "writable by group or others (mode 0646)"},
		{name: "another user's, naming root's process", mode: 0o644, fileStranger: true, wantMsg: "(rotplan-stranger) but names pid"},
		{name: "another user's, naming that user's process", mode: 0o644, fileStranger: true, procStranger: true},
		{name: "root's, naming another user's process", mode: 0o644, procStranger: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cred *syscall.Credential
			uid := -1
			if tt.fileStranger || tt.procStranger {
				_, u, g := stranger(t)
				uid = u
				if tt.procStranger {
					cred = &syscall.Credential{Uid: uint32(u), Gid: uint32(g)}
				}
			}
			cmd, pidFile := startSleep(t, cred)
			if err := os.Chmod(pidFile, tt.mode); err != nil {
				t.Fatal(err)
			}
			if tt.fileStranger {
				if err := os.Chown(pidFile, uid, -1); err != nil {
					t.Fatal(err)
				}
			}
			cfg := testConfig(t, (*Reload)(nil).Spec(), map[string]cty.Value{"pid_file": cty.StringVal(pidFile)})
			env, _ := testEnv(t)
			path := ""
			if tt.wantMsg != "" {
				path = "pid_file"
			}
			wantReloadOf(t, env, cfg, cmd, path, tt.wantMsg)
		})
	}
}

// TestReloadSameProcessAsPreflight: the process the run's preflight found
// is the one signalled, or a restart of it (the same program as the same
// user), never an unrelated process that got its pid or the pid file.
func TestReloadSameProcessAsPreflight(t *testing.T) {
	tests := []struct {
		name string
		// between is what happens between the preflight and the signal;
		// it returns the directory of the helper process that should get
		// the signal, if any.
		between func(t *testing.T, env *Env, pidFile string) string
		wantMsg string
	}{
		{"restarted", func(t *testing.T, _ *Env, pidFile string) string {
			t.Helper()
			cmd, dir, _ := startReloadHelper(t)
			writePIDFile(t, pidFile, cmd.Process.Pid)
			return dir
		}, ""},
		{"another program", func(t *testing.T, _ *Env, pidFile string) string {
			t.Helper()
			sleep, _ := startSleep(t, nil)
			writePIDFile(t, pidFile, sleep.Process.Pid)
			t.Cleanup(func() { wantEndedBy(t, sleep, syscall.SIGTERM) })
			return ""
		}, "nor a restart of it (the same program as the same user)"},
		{"pid reused", func(t *testing.T, env *Env, pidFile string) string {
			t.Helper()
			// True pid reuse cannot be forced: what the preflight found
			// is made to have started at another time instead.
			env.session.processes.Range(func(k, v any) bool {
				p := v.(process)
				p.start++
				env.session.processes.Store(k, p)
				return true
			})
			return ""
		}, "an unrelated process got its pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, dir, pidFile := startReloadHelper(t)
			cfg := testConfig(t, (*Reload)(nil).Spec(), map[string]cty.Value{"pid_file": cty.StringVal(pidFile)})
			env, _ := testEnv(t)
			if err := (*Reload)(nil).CheckHost(context.Background(), env, cfg); err != nil {
				t.Fatalf("CheckHost (the preflight): %v", err)
			}
			want := tt.between(t, env, pidFile)
			_, err := (*Reload)(nil).Apply(context.Background(), env, cfg)
			if tt.wantMsg != "" {
				if !strings.Contains(wantAttrErr(t, err, "pid_file"), tt.wantMsg) {
					t.Errorf("Apply: %q does not say %q", err, tt.wantMsg)
				}
				// The first process had it been signalled would record it.
				first.Process.Signal(syscall.SIGUSR1)
				if got := waitForSignal(t, dir); got != "user defined signal 1" {
					t.Errorf("the preflight's process received %q first, want the test's SIGUSR1", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if got := waitForSignal(t, want); got != "hangup" {
				t.Errorf("the restarted process received %q, want the reload's SIGHUP", got)
			}
		})
	}
}

// TestReloadRollbackRefusesUnrelatedProcess: a rollback signals the
// process the run signalled (as Snapshot journaled it) or a restart of it,
// and refuses any other, saying what to check before signalling by hand.
func TestReloadRollbackRefusesUnrelatedProcess(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(t *testing.T, pidFile string, snap map[string]string) // between the run and the rollback
		wantMsg string
	}{
		{"another program", func(t *testing.T, pidFile string, _ map[string]string) {
			t.Helper()
			sleep, _ := startSleep(t, nil)
			writePIDFile(t, pidFile, sleep.Process.Pid)
			t.Cleanup(func() { wantEndedBy(t, sleep, syscall.SIGTERM) })
		}, "nor a restart of it"},
		{"pid reused", func(t *testing.T, _ string, snap map[string]string) {
			t.Helper()
			// True pid reuse cannot be forced: the journaled process is
			// made to have started at another time instead.
			start, err := strconv.ParseUint(snap["start"], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			snap["start"] = strconv.FormatUint(start+1, 10)
		}, "an unrelated process got its pid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, dir, pidFile := startReloadHelper(t)
			cfg := testConfig(t, (*Reload)(nil).Spec(), map[string]cty.Value{"pid_file": cty.StringVal(pidFile)})
			env, _ := testEnv(t)
			snap, err := (*Reload)(nil).Snapshot(context.Background(), env, cfg)
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			tt.tamper(t, pidFile, snap)
			// A rollback may come from a resumed run: a new session.
			env, _ = testEnv(t)
			err = (*Reload)(nil).Rollback(context.Background(), env, cfg, cty.NilVal, snap)
			exe, _ := os.Executable()
			wantErrContains(t, err, tt.wantMsg, fmt.Sprintf("check that the process %s names is %s run by uid %d", pidFile, exe, os.Getuid()))
			cmd.Process.Signal(syscall.SIGUSR1)
			if got := waitForSignal(t, dir); got != "user defined signal 1" {
				t.Errorf("the run's process received %q first, want the test's SIGUSR1", got)
			}
		})
	}
}

func TestReloadExpectValidate(t *testing.T) {
	tests := []struct {
		name     string
		vals     map[string]cty.Value
		wantPath string // "" for no error
		wantMsg  string
	}{
		{"with pid", map[string]cty.Value{"pid": cty.NumberIntVal(1), "expect": expectBlock("/usr/bin/vault", "vault", "vaultprod")}, "", ""},
		{"unknown executable", map[string]cty.Value{"pid_file": cty.StringVal("/run/x.pid"),
			"expect": cty.ObjectVal(map[string]cty.Value{"executable": cty.UnknownVal(cty.String), "name": cty.NullVal(cty.String), "user": cty.NullVal(cty.String)})}, "", ""},
		{"with command", map[string]cty.Value{"command": stringList("/bin/true"), "expect": expectBlock("", "vault", "")}, "expect", "only applies to pid_file and pid"},
		{"empty", map[string]cty.Value{"pid_file": cty.StringVal("/run/x.pid"), "expect": expectBlock("", "", "")}, "expect", "is empty"},
		{"relative executable", map[string]cty.Value{"pid_file": cty.StringVal("/run/x.pid"), "expect": expectBlock("bin/vault", "", "")}, "expect.executable", `name = "vault"`},
		{"name with a slash", map[string]cty.Value{"pid_file": cty.StringVal("/run/x.pid"), "expect": expectBlock("", "/usr/bin/vault", "")}, "expect.name", "a path goes in executable"},
		{"empty user", map[string]cty.Value{"pid_file": cty.StringVal("/run/x.pid"), "expect": cty.ObjectVal(map[string]cty.Value{
			"executable": cty.NullVal(cty.String), "name": cty.NullVal(cty.String), "user": cty.StringVal("")})}, "expect.user", "must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (*Reload)(nil).Validate(testConfig(t, (*Reload)(nil).Spec(), tt.vals))
			if tt.wantPath == "" {
				wantValid(t, err)
				return
			}
			if msg := wantAttrErr(t, err, tt.wantPath); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("error %q does not say %q", msg, tt.wantMsg)
			}
		})
	}
}

func TestReloadParseStat(t *testing.T) {
	tests := []struct {
		name      string
		stat      string
		wantComm  string
		wantState string
		wantStart uint64
		wantErr   bool
	}{
		{"plain", "812 (vault) S 1 812 812 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 9 0 4242 1000 100 18446744073709551615", "vault", "S", 4242, false},
		{"comm with parentheses and spaces", "9 (a) (b c) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0 0", "a) (b c", "Z", 77, false},
		{"cut short", "9 (x) S 1 2 3", "", "", 0, true},
		{"no comm", "9 x S 1", "", "", 0, true},
		{"start not a number", "9 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 soon 0", "", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p process
			state, err := p.parseStat([]byte(tt.stat))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseStat: %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (p.comm != tt.wantComm || state != tt.wantState || p.start != tt.wantStart) {
				t.Errorf("comm %q, state %q, start %d; want %q, %q, %d", p.comm, state, p.start, tt.wantComm, tt.wantState, tt.wantStart)
			}
		})
	}
}

// TestReloadPlanShowsProcess: the preview says which process a reload
// would signal: its pid, program, user and start.
func TestReloadPlanShowsProcess(t *testing.T) {
	cmd, pidFile := startSleep(t, nil)
	cfg := testConfig(t, (*Reload)(nil).Spec(), map[string]cty.Value{"pid_file": cty.StringVal(pidFile)})
	env, _ := testEnv(t)
	pv, err := (*Reload)(nil).Plan(context.Background(), env, cfg)
	if err != nil || len(pv.Problems) != 0 {
		t.Fatalf("Plan = %v, problems %v", err, pv.Problems)
	}
	sleep, err := filepath.EvalSymlinks("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	want := map[string]string{
		"process":    fmt.Sprintf("pid %d (sleep) (from %s)", pid, pidFile),
		"executable": sleep,
		"user":       describeUID(os.Getuid()),
	}
	got := map[string]string{}
	for _, f := range pv.Now {
		got[f.Name] = f.Value
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s: %q, want %q (facts %v)", name, got[name], v, pv.Now)
		}
	}
	if _, err := time.Parse(time.RFC3339, got["started"]); err != nil {
		t.Errorf("started: %q is not a time: %v", got["started"], err)
	}
	wantEndedBy(t, cmd, syscall.SIGTERM)
}
