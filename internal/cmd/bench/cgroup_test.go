package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestLimitCPU caps a busy process at a fifth of a CPU and checks, from its
// CPU time, that the cap holds, and that undo removes the group.
func TestLimitCPU(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create a cgroup")
	}
	spin := exec.Command("sh", "-c", "while :; do :; done")
	if err := spin.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { spin.Process.Kill(); spin.Wait() }()
	pid := spin.Process.Pid

	undo, err := limitCPU(pid, 0.2)
	if err != nil {
		if strings.Contains(err.Error(), "no cgroup cpu controller") {
			t.Skipf("skipped: %v", err)
		}
		t.Fatal(err)
	}
	undone := false
	defer func() {
		if !undone {
			undo()
		}
	}()
	group := cgroupOf(t, pid)
	if !strings.Contains(group, fmt.Sprintf("rotplan-bench-%d", os.Getpid())) {
		t.Fatalf("the process is in %q, not in the bench's group", group)
	}
	before := processCPU(pid)
	time.Sleep(time.Second)
	used := processCPU(pid) - before
	// 0.2 of a CPU over a second is 200 ms; unlimited, it would be ~1 s.
	if used > 500*time.Millisecond {
		t.Errorf("the capped process used %s of CPU in 1 s; want about 200ms", used)
	}
	undone = true
	if err := undo(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	if group := cgroupOf(t, pid); strings.Contains(group, "rotplan-bench") {
		t.Errorf("after undo the process is still in %q", group)
	}
}

func TestLimitCPURejects(t *testing.T) {
	for _, f := range []float64{0, -1, 65} {
		if _, err := limitCPU(os.Getpid(), f); err == nil {
			t.Errorf("limitCPU(%g) = nil error", f)
		}
	}
}

// cgroupOf is the line of /proc/PID/cgroup that names the cpu controller's
// group (v1), or the unified one (v2).
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	var unified string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "cpu" {
				return line
			}
		}
		if parts[0] == "0" {
			unified = line
		}
	}
	return unified
}
