package journal

import "os"

// Where a failpoint can stop the process.
const (
	beforeAppend = iota // the record is not written: the step's effects are
	afterAppend         // the record is appended (durable when Append took it)
	afterSync           // every record appended so far is durable
)

// failpoint is a test hook: a build with the failpoints tag sets it so that
// the crash tests can kill rotplan at every journal boundary. In other builds
// it does nothing.
var failpoint = func(where, n int, f *os.File, line []byte) {}
