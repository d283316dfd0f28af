// Package remote reaches other hosts over SSH: it dials them (host keys
// always checked against a known_hosts file, keys from files or an
// ssh-agent), keeps one connection per host in a bounded Pool, runs
// commands there, and reads and replaces files over SFTP with the promises
// rotplan makes for local files.
//
// A replaced file is never readable by others at any instant (the
// temporary file is created owner-only by the SFTP open itself, see
// ownerOnlyCreates), is flushed (fsync@openssh.com), gets its owner and
// mode before it is renamed over the target (posix-rename@openssh.com, an
// atomic replace), and its directory is flushed where the host lets
// rotplan run sync(1). No symbolic link is followed on the way to a file
// rotplan changes.
//
// What cannot be promised remotely, and why: SFTP names files by path
// only (there is no openat or renameat in the protocol), so the checks on
// the directories leading to a file (each component is a directory, not a
// symbolic link) and the rename that follows are separate requests. A user
// who can write into one of those directories can swap a component between
// the check and the rename; the check protects against links that were
// there before, not against such a user. Locally, rotplan holds the
// directory open and works through the descriptor; on a host, the
// directories on the way to a key must be writable by root (or the SSH
// user) alone for the write to be safe, as OpenSSH itself demands of the
// path to authorized_keys.
//
// It knows nothing of steps, plans or the journal: the step kinds reach it
// through their environment and report its errors as their own. No error
// it returns holds file content, key material or a passphrase.
package remote
