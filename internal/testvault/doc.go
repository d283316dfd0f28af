// Package testvault is the test harness; it is never used by rotplan itself.
//
// It owns bringing up a real, production-like HashiCorp Vault server on
// loopback for tests and for the demo command (internal/cmd/demo):
//
//   - Vault runs from a real binary (see [Options.Binary]; tests take it from
//     the ROTPLAN_VAULT_BIN environment variable, see [StartT]) with file
//     storage under a base directory, as the system user "vaultprod" when the
//     harness runs as root (the user and group are created when missing), or
//     as the current user otherwise.
//   - A bootstrap listener (plain HTTP on 127.0.0.1) is the harness's back
//     door: [Vault.Root] returns a client on it with the root token.
//   - A production listener (HTTPS on 127.0.0.1, client certificates
//     required) serves a certificate issued by the Vault PKI itself: a root
//     CA mounted at "pki" signs an intermediate mounted at "pki-prod", which
//     issues the initial server and admin (client) certificates through the
//     roles "vault-server" and "admin-client"; a third role, "leaf", issues
//     EC P-256 leaf certificates under apps.privsec.ch (LeafDomain). Cert
//     auth maps the admin certificate to the "rotplan-admin" policy.
//   - The files an operator would have on a production host are laid out
//     below the base directory (root/vault/tls-admin/prod,
//     home/vaultprod/tls-prod, root/vault/env/{ca.pem,prod.env}); Vault reloads
//     the production listener's certificate on SIGHUP (pid file in run/vault).
//   - The harness supervises Vault as systemd supervises a unit: the
//     generated command bin/restart-vault asks it (through a FIFO, as the
//     agents' and the proxy's restart commands do) to stop the server and
//     start a new process with the same configuration, and exits 0 as soon
//     as that process runs, as `systemctl restart` reports "active
//     (running)". The new process comes up sealed and the harness unseals
//     it in the background right after, so a client right after the command
//     may see refused or reset connections or a sealed Vault: running is
//     not ready (the seed's steps 6-7). [Vault.Restart] restarts and waits
//     until Vault serves; [Vault.WaitReady] waits after the command.
//   - Apps (the seed's ncprd1 and resume2me, see [SeedApps]) are set up on
//     request by [Vault.AddApps]: a system user each, a home below the base
//     directory (home/<app>) with the agent's login key, certificate and
//     CA file, the PKI role agent-mtls-<app>, the policies pki-issue-<app>
//     and marker-cert-auth (the proxy's agent also pki-ca-read-proxyprod),
//     the cert-auth mapping auth/cert/certs/agent-<app>
//     and a real Vault Agent (the same binary, "vault agent") running as the
//     app user, logging in with cert auth through the production listener
//     and writing its token to a file sink. The harness supervises the
//     agents as systemd supervises user units; a generated restart command
//     per app (bin/restart-agent-<app>) asks it to restart one, as a plan
//     would run "systemctl --user restart".
//   - The edge proxy (the seed's proxyprod) is started on request by
//     [Vault.StartProxy]: a real nginx (Debian's package, see [NginxBinary]
//     and install-nginx.sh), master as root and workers as the system user
//     proxyprod, on one loopback port: per app a TLS server answering SNI
//     <app>.prod.privsec.ch with a leaf from the PKI role nginx-<app> (that
//     name only), and the Vault edge for SNI vault.prod.privsec.ch, which
//     terminates TLS and re-encrypts towards the production listener,
//     trusting home/proxyprod/nginx/ca/current-ca-chain.pem and presenting
//     the proxy's client certificate home/proxyprod/vault/mtls/agent.crt.
//     That certificate is also the login of the proxy's own Vault Agent
//     ([Proxy.Agent], set up as an app named proxyprod: mapping
//     auth/cert/certs/agent-proxyprod with the policies pki-issue-proxyprod,
//     pki-ca-read-proxyprod and marker-cert-auth, restart command
//     bin/restart-agent-proxyprod). The harness supervises nginx as it does
//     the agents (bin/restart-proxy restarts or reloads it) and stops it
//     and the proxy's agent with Vault.
//   - A Vault cluster with integrated storage (Raft) is started on request
//     on the hosts of a fleet (internal/testhosts) by [StartCluster]: one
//     node a host, its files below the host's directory (Host.Dir/vault:
//     configuration, Raft data, tls/tls.crt and tls/tls.key, the Vault
//     user's, and the pid file Vault writes), each running as the system
//     user "vault" in its host's namespace. The first node initialises the
//     cluster and sets up the same PKI, roles, policy and admin identity as
//     the single server (the admin files and the root CA in the fleet's
//     controller directory), issues every node's listener certificate (its
//     address as IP SAN, and vault.prod.privsec.ch), and is the active
//     node; the others join it. Each node listens at its host's address,
//     port [ClusterPort] (mTLS required), and the harness reaches it through
//     a bootstrap listener on the host's loopback, dialled through the
//     namespace.
//
// Everything else listens on 127.0.0.1 only. The harness is Linux-only (it uses
// useradd, /proc and Linux process attributes). Root token and unseal key are
// kept in memory and never printed.
//
// The parents of the base directory must be traversable by the Vault user
// (mode o+x) when running as root; [Start] checks this up front.
package testvault
