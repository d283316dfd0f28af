package steps

import (
	"errors"
	"fmt"
)

// UnsettledError is an Apply that failed after its change may have taken
// effect: a file renamed into place on a host whose answer was lost, or
// whose flush of the directory after the rename was cut off. What the
// step did is not known, so the engine undoes it with the completed
// steps when the run rolls back (Rollbacker.Rollback, with its outputs
// unknown), as it does a step that a killed run left unsettled. Any other
// error from Apply means the step changed nothing.
type UnsettledError struct {
	Err error
}

// Error is the error's own.
func (e *UnsettledError) Error() string { return e.Err.Error() }

// Unwrap returns the underlying error.
func (e *UnsettledError) Unwrap() error { return e.Err }

// AttrError is an error that one argument of a step block is to blame for.
// Path names the argument: "mode", or "tls.ca_file" inside a nested block.
// The engine turns it into a diagnostic that points at the argument's
// expression.
type AttrError struct {
	Path string
	Err  error
}

// Error names the argument and what is wrong with it.
func (e *AttrError) Error() string { return fmt.Sprintf("%s: %v", e.Path, e.Err) }

// Unwrap returns the underlying error.
func (e *AttrError) Unwrap() error { return e.Err }

// attrErr builds an *AttrError from a format string.
func attrErr(path, format string, args ...any) error {
	return &AttrError{Path: path, Err: fmt.Errorf(format, args...)}
}

// ErrUnknown is returned by Config accessors for a value that is not known
// yet; Validate methods skip such values.
var ErrUnknown = errors.New("value not known until the run")
