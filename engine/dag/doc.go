// Package dag owns the shape of a run: vertices by name, the edges between
// them (a depends on b), the cycles among them, and the one walker that
// every walk of the engine goes through: the run forward, the rollback
// backward, and the order steps are listed and evaluated in.
//
// It knows nothing of what its vertices are: a vertex is a name, and what
// is done at it is the caller's. It never evaluates, journals or runs
// anything itself, and imports nothing of rotplan.
package dag
