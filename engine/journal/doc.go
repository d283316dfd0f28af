// Package journal is rotplan's crash-safe record of a run: an append-only
// file of checksummed records, made durable with group commit, and the lock
// that keeps two runs off the same state directory.
//
// It knows records, not steps: what a record means for a rotation (which
// steps are done, which must be redone) is the engine's business. It never
// receives a secret: the engine journals hashes, serials and fingerprints,
// and the outputs a step kind does not declare sensitive.
package journal
