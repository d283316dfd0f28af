package proc

import (
	"bufio"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestTerminate(t *testing.T) {
	t.Run("a process that stops on SIGTERM", func(t *testing.T) {
		p, err := Spawn(exec.Command("sleep", "30"))
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Terminate("sleep", 30*time.Second); err != nil {
			t.Errorf("Terminate: %v", err)
		}
		select {
		case <-p.Done():
		default:
			t.Error("Done is not closed after Terminate")
		}
		if p.Err() == nil {
			t.Error("Err is nil for a process killed by SIGTERM")
		}
	})
	t.Run("a process that ignores SIGTERM", func(t *testing.T) {
		cmd := exec.Command("sh", "-c", `trap "" TERM; echo ready; exec sleep 30`)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		p, err := Spawn(cmd)
		if err != nil {
			t.Fatal(err)
		}
		// The shell must have set its trap before the signal (the exec'd
		// sleep inherits the ignored SIGTERM): it says so.
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || line != "ready\n" {
			t.Fatalf("the shell said %q (%v), want ready", line, err)
		}
		err = p.Terminate("stubborn", 200*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "stubborn") || !strings.Contains(err.Error(), "killed") {
			t.Errorf("Terminate: %v, want an error naming the process and saying it was killed", err)
		}
		select {
		case <-p.Done():
		default:
			t.Error("Done is not closed after Terminate killed it")
		}
	})
}
