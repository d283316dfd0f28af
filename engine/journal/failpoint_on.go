//go:build failpoints

package journal

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// With the failpoints build tag, ROTPLAN_FAILPOINT=WHERE:N kills the process
// with SIGKILL at the Nth record this process appends:
//
//	before:N  before record N is written (the step's effects are done)
//	after:N   once record N is appended: durable if Append took it; one
//	          that Write took may still wait in memory, and dies with the
//	          process, as a power failure would lose it
//	tear:N    after writing the first half of record N
//	after-start:ADDR
//	          once the step_started record of step ADDR is durable (and
//	          every record before it): a kill at a named point of the run,
//	          whatever order parallel steps take
func init() {
	spec := os.Getenv("ROTPLAN_FAILPOINT")
	if spec == "" {
		return
	}
	where, num, _ := strings.Cut(spec, ":")
	if where == "after-start" {
		started := []byte(`"type":"step_started"`)
		step := []byte(`"step":` + strconv.Quote(num) + `,`)
		seen := false // called with the journal's lock held
		failpoint = func(point, n int, f *os.File, line []byte) {
			switch {
			case point == afterAppend && bytes.Contains(line, started) && bytes.Contains(line, step):
				seen = true
			case point == afterSync && seen:
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(time.Minute)
			}
		}
		return
	}
	at, err := strconv.Atoi(num)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rotplan: bad ROTPLAN_FAILPOINT %q\n", spec)
		os.Exit(70)
	}
	failpoint = func(point, n int, f *os.File, line []byte) {
		if n != at {
			return
		}
		switch {
		case where == "before" && point == beforeAppend:
		case where == "after" && point == afterAppend:
		case where == "tear" && point == beforeAppend:
			f.Write(line[:len(line)/2])
			f.Sync()
		default:
			return
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute) // the signal is on its way; never go on
	}
}
