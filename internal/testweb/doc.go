// Package testweb is a test harness, never used by rotplan itself: a web
// fleet for the tests and benchmarks of rollouts (issue 18).
//
// It puts a real nginx (Debian's, [testvault.NginxBinary]) on every host
// of an internal/testhosts bed: each host's network namespace runs its own
// master, as root, with a prefix directory of its own below the host's
// directory (the hosts share the machine's file system): configuration,
// certificate, key, pid file and logs. Every nginx listens on its host's
// address, port 443, and serves one name, web.prod.privsec.ch
// ([ServerName]), with a leaf of the PKI role nginx-web of an
// internal/testvault Vault, issued when the bed starts.
//
// The Vault is testvault's single node, on the root namespace's loopback;
// the controller's namespace reaches only its own loopback and the bed's
// bridge, so the bed runs a forwarder: a listener made inside the
// controller's namespace on 127.0.0.1 that copies each connection byte for
// byte to Vault's production listener. rotplan in the controller talks to
// Vault at [Web.VaultAddr] and TLS (mutual, to Vault's own certificate)
// stays end to end.
//
// It reuses the other harnesses rather than copying them: nginx's
// configuration frame and the leaves come from internal/testvault, the
// processes are supervised with internal/proc as the hosts' sshd are.
// Nothing here touches rotplan's packages.
package testweb
