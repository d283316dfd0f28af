// Package atomicfile replaces a file whole, so that a reader sees the old
// content or the new, never part of either: what rotplan's own files (a
// saved plan, a metrics textfile, a formatted plan) and its benchmark need.
// The write step's files, with owners and a journal to wait for, are
// steps' own business.
package atomicfile
