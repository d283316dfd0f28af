// Package command runs a program on this host the way every part of
// rotplan that runs one does (the reload kind's command, a step's rollback
// block): without a shell, with a time limit, in a process group of its own
// that is killed whole, and with an error that quotes the command and
// holds the end of its output.
//
// It knows nothing of steps or plans: its callers say what to run and
// report its errors as their own.
package command
