package steps

import (
	"errors"
	"fmt"
)

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
