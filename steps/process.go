package steps

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rotplan/rotplan/internal/command"
)

// process is a process as /proc shows it: enough to tell it from an
// unrelated process that gets its pid later, and to say what it is.
type process struct {
	pid   int
	start uint64 // clock ticks after boot (/proc/PID/stat, field 22)
	uid   int    // real
	euid  int    // effective
	comm  string // the name the process gives itself; it can change it
	// exe is the program's path, "" when it cannot be read (another
	// user's process, when rotplan is not root: exeErr says why). When
	// the file was replaced or removed since the process started it (an
	// upgrade), the kernel adds " (deleted)"; exe is the path without it
	// and replaced is set: the process still runs that program.
	exe      string
	exeErr   error
	replaced bool
	// bootID and btime are the boot of the host whose /proc described
	// the process (/proc/sys/kernel/random/boot_id, and /proc/stat's
	// btime in Unix seconds): start counts from that boot, and a pid and
	// start time of another boot name another process. "" and 0 when
	// unknown (a journal of an older rotplan).
	bootID string
	btime  int64
}

// readProcess reads what /proc says of pid. A zombie is refused: it has
// exited, and a signal would reach nothing.
func readProcess(pid int) (process, error) {
	return readProcessWith(pid, os.ReadFile, os.Readlink)
}

// readProcessWith is readProcess with the /proc of another host, read
// with readFile and readLink (a reload on a host, reload_remote.go).
func readProcessWith(pid int, readFile func(string) ([]byte, error), readLink func(string) (string, error)) (process, error) {
	p := process{pid: pid}
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := readFile(dir + "/stat")
	if errors.Is(err, fs.ErrNotExist) {
		return p, errors.New("no such process")
	}
	if err != nil {
		return p, err
	}
	state, err := p.parseStat(stat)
	if err != nil {
		return p, fmt.Errorf("%s/stat: %v", dir, err)
	}
	if state == "Z" {
		return p, errors.New("the process has exited (a zombie, not yet reaped by its parent)")
	}
	status, err := readFile(dir + "/status")
	if err != nil {
		return p, err
	}
	if p.uid, p.euid, err = parseUids(status); err != nil {
		return p, fmt.Errorf("%s/status: %v", dir, err)
	}
	if b, err := readFile("/proc/sys/kernel/random/boot_id"); err == nil {
		p.bootID = strings.TrimSpace(string(b))
	}
	if b, err := readFile("/proc/stat"); err == nil {
		p.btime, _ = parseBtime(b)
	}
	if exe, err := readLink(dir + "/exe"); err != nil {
		p.exeErr = command.Plain(err)
	} else {
		p.exe, p.replaced = strings.CutSuffix(exe, " (deleted)")
	}
	// Had the process exited and its pid been reused while the files
	// above were read, they would describe two processes.
	var again process
	if b, err := readFile(dir + "/stat"); err != nil {
		return p, errors.New("the process exited while rotplan read /proc")
	} else if _, err := again.parseStat(b); err != nil || again.start != p.start {
		return p, errors.New("the process exited while rotplan read /proc, and another has its pid")
	}
	return p, nil
}

// parseStat reads comm and the start time from /proc/PID/stat, and
// returns the state. comm may hold spaces and parentheses; the fields
// after the last ")" do not.
func (p *process) parseStat(b []byte) (state string, err error) {
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", errors.New("not in the format rotplan knows")
	}
	p.comm = s[open+1 : end]
	fields := strings.Fields(s[end+1:])
	// fields[0] is field 3 (the state); the start time is field 22.
	if len(fields) < 20 {
		return "", errors.New("not in the format rotplan knows")
	}
	if p.start, err = strconv.ParseUint(fields[19], 10, 64); err != nil {
		return "", errors.New("not in the format rotplan knows")
	}
	return fields[0], nil
}

// parseUids reads the real and effective uid from /proc/PID/status.
func parseUids(b []byte) (uid, euid int, err error) {
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) >= 2 {
			uid, err1 := strconv.Atoi(f[0])
			euid, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil {
				return uid, euid, nil
			}
		}
		break
	}
	return 0, 0, errors.New("no Uid line in the format rotplan knows")
}

// program names what the process runs: its executable, or the name it
// gives itself when rotplan cannot see the executable.
func (p process) program() string {
	if p.exe != "" {
		return p.exe
	}
	return fmt.Sprintf("%q", p.comm)
}

// sameServiceAs says why p is neither the process was nor a restart of it.
// The same pid with another start time is another process that got the pid
// once was exited; another pid is a restart when it runs the same program
// as the same user.
// A pid and start time of another boot of the host (boot_id) say nothing:
// the process is then judged as one with another pid.
func (p process) sameServiceAs(was process) error {
	sameBoot := p.bootID == "" || was.bootID == "" || p.bootID == was.bootID
	if p.pid == was.pid && sameBoot {
		if p.start != was.start {
			return fmt.Errorf("pid %d is not the process rotplan found with that pid before: that one started %s, this one %s; the service exited and an unrelated process got its pid",
				p.pid, was.startedAt(), p.startedAt())
		}
		return nil
	}
	same := p.uid == was.uid
	if p.exe != "" && was.exe != "" {
		same = same && p.exe == was.exe
	} else {
		same = same && p.comm == was.comm
	}
	if !same {
		earlier := ""
		if !sameBoot {
			earlier = " in an earlier boot of the host"
		}
		return fmt.Errorf("pid %d runs %s as %s: it is not the process rotplan found before%s, pid %d (%s as %s), nor a restart of it (the same program as the same user)",
			p.pid, p.program(), describeUID(p.uid), earlier, was.pid, was.program(), describeUID(was.uid))
	}
	return nil
}

// facts describe the process for a preview.
func (p process) facts() []Fact {
	exe := p.exe
	switch {
	case exe == "":
		exe = fmt.Sprintf("%q (the executable cannot be read: %v)", p.comm, p.exeErr)
	case p.replaced:
		exe += " (replaced on disk since the process started)"
	}
	user := describeUID(p.uid)
	if p.euid != p.uid {
		user += ", effective " + describeUID(p.euid)
	}
	facts := []Fact{{Name: "executable", Value: exe}, {Name: "user", Value: user}}
	if at, ok := p.started(); ok {
		facts = append(facts, Fact{Name: "started", Value: at.Format(time.RFC3339)})
	}
	return facts
}

// record is what Snapshot journals of the process; recordedProcess reads
// it back.
func (p process) record() map[string]string {
	return map[string]string{
		"pid":     strconv.Itoa(p.pid),
		"start":   strconv.FormatUint(p.start, 10),
		"uid":     strconv.Itoa(p.uid),
		"euid":    strconv.Itoa(p.euid),
		"exe":     p.exe,
		"comm":    p.comm,
		"boot_id": p.bootID,
	}
}

// recordedProcess reads what record wrote, from a journal: nil when it is
// not there (a command, or a journal of an older rotplan) or not in its
// form.
func recordedProcess(m map[string]string) *process {
	var p process
	var err error
	var errs [4]error
	p.pid, errs[0] = strconv.Atoi(m["pid"])
	p.start, errs[1] = strconv.ParseUint(m["start"], 10, 64)
	p.uid, errs[2] = strconv.Atoi(m["uid"])
	p.euid, errs[3] = strconv.Atoi(m["euid"])
	if err = errors.Join(errs[:]...); err != nil || p.pid <= 0 {
		return nil
	}
	p.exe, p.comm, p.bootID = m["exe"], m["comm"], m["boot_id"]
	return &p
}

// describeUID names a user for a message: "uid 998 (vaultprod)".
func describeUID(uid int) string {
	if name := userName(uid); name != strconv.Itoa(uid) {
		return fmt.Sprintf("uid %d (%s)", uid, name)
	}
	return fmt.Sprintf("uid %d", uid)
}

// userHZ is the unit of the start times in /proc: fixed by the kernel's
// ABI at 100 a second, whatever the kernel's own clock.
const userHZ = 100

// bootTime is the btime of this machine's /proc/stat, in Unix seconds.
func bootTime() (int64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	return parseBtime(b)
}

// parseBtime reads the boot time, in Unix seconds, from a /proc/stat.
func parseBtime(b []byte) (int64, bool) {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			return boot, err == nil
		}
	}
	return 0, false
}

// started is when p started: its start ticks after the boot of the host
// whose /proc described it (this machine's when that is unknown).
func (p process) started() (time.Time, bool) {
	boot, ok := p.btime, p.btime != 0
	if !ok {
		boot, ok = bootTime()
	}
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(boot, 0).Add(time.Duration(p.start) * time.Second / userHZ).UTC(), true
}

// startedAt says when a process started, to the hundredth of a second
// (two processes with one pid may start within a second): "at
// 2026-12-02 12:40:01.25 UTC", or the ticks after boot.
func (p process) startedAt() string {
	if at, ok := p.started(); ok {
		return "at " + at.Format("2006-01-02 15:04:05.00 UTC")
	}
	return fmt.Sprintf("%d ticks after boot", p.start)
}
