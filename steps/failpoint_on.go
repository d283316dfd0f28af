//go:build failpoints

package steps

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// With the failpoints build tag, ROTPLAN_FAILPOINT=temp:N kills the process
// with SIGKILL once the Nth write of this process has filled, flushed and
// set the mode of its temporary file, before its start record is durable
// and before the rename. (The journal's failpoints, before:N and after:N,
// read the same variable.)
func init() {
	where, num, _ := strings.Cut(os.Getenv("ROTPLAN_FAILPOINT"), ":")
	at, err := strconv.Atoi(num)
	if where != "temp" || err != nil {
		return
	}
	var (
		tempMu sync.Mutex
		n      int
	)
	tempFilled = func() {
		// Writes run on several goroutines: count under a lock.
		tempMu.Lock()
		n++
		hit := n == at
		tempMu.Unlock()
		if !hit {
			return
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute) // the signal is on its way; never go on
	}
}
