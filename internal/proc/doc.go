// Package proc runs the test beds' long-lived processes (Vault, its agents,
// nginx, sshd): a started command whose end is waited for in the
// background, and stopped with SIGTERM, then SIGKILL after a grace period.
// It is shared by internal/testvault and internal/testhosts; rotplan itself
// does not use it.
package proc
