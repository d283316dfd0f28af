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
//	after-TYPE:ADDR
//	          once the first record of type TYPE (host_failed,
//	          rollback_started...) for step ADDR is durable (and every
//	          record before it): a kill at a named point of the run,
//	          whatever order parallel steps take; after-start is
//	          after-step_started
//	before-TYPE:ADDR
//	          before that record is written (a step_succeeded: the step's
//	          effects are done, and lost to the journal)
func init() {
	spec := os.Getenv("ROTPLAN_FAILPOINT")
	if spec == "" {
		return
	}
	where, num, _ := strings.Cut(spec, ":")
	when, typ, named := strings.Cut(where, "-")
	if named && (when == "after" || when == "before") {
		if typ == "start" {
			typ = StepStarted
		}
		ofType := []byte(`"type":` + strconv.Quote(typ) + `,`)
		step := []byte(`"step":` + strconv.Quote(num))
		ofStep := func(line []byte) bool {
			_, rest, ok := bytes.Cut(line, step)
			return ok && len(rest) > 0 && (rest[0] == ',' || rest[0] == '}')
		}
		seen := false // called with the journal's lock held
		failpoint = func(point, n int, f *os.File, line []byte) {
			match := line != nil && bytes.Contains(line, ofType) && ofStep(line)
			switch {
			case when == "before" && point == beforeAppend && match:
			case when == "after" && point == afterAppend && match:
				seen = true
				return
			case when == "after" && point == afterSync && seen:
			default:
				return
			}
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Minute)
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
