// Command demo shows rotplan doing the seed's whole "rotate everything" run
// on a local production-like bed. It starts the test harness Vault
// (internal/testvault) in a fresh directory. As root, with nginx
// installed, it also sets up the seed's apps with their real Vault Agents
// and the edge proxy (a real nginx with its own agent), reads from outside
// the serial of every certificate the run rotates (served by Vault or
// nginx, or the login an agent's token came from: the serial Vault's cert
// auth recorded, looked up with the harness's root client; the token is
// never shown), runs `rotplan plan`, `rotplan run` and `rotplan status`
// with examples/everything.hcl, and checks that every serial changed and
// matches its file on disk, and that Vault answers over mTLS directly and
// through the proxy. Not as root, it says so and runs the control-plane
// plan (examples/prod.hcl) alone, checking that the served certificate
// changed.
//
// Then the fleet part, issue 18's hosts: as root, with OpenSSH and nginx
// installed and network namespaces permitted, it starts two beds of hosts
// in network namespaces (internal/testhosts), each host running its own
// sshd: a 3-node Vault cluster with Raft storage (testvault.StartCluster)
// and nginx on four hosts with leaves from the demo's Vault
// (testweb.StartWeb). It runs `rotplan plan`, `rotplan run` and `rotplan
// status` of examples/cluster.hcl and examples/fleet.hcl in each bed's
// controller namespace, with a variable file and the state below -dir, and
// checks from the controller, outside rotplan: every node's and host's
// served serial (SNI) before and after, changed to the one in its file;
// from a watcher polling during the run, that the standbys changed before
// the active node, one node at a time, and that no nginx batch changed
// before every host of the batch before had; and that autopilot says
// healthy with 3 voters after. When it cannot, it says why in one line and
// skips that part.
//
// It exits non-zero when a check fails, and when a process it started or
// a namespace it created is left at the end. On SIGINT or SIGTERM (^C)
// a running rotplan gets one SIGINT and stops as at a terminal, then
// everything is stopped the same way.
//
// Usage:
//
//	go run ./internal/cmd/demo -vault BIN -rotplan BIN -dir .demo -plan examples/prod.hcl -everything examples/everything.hcl -cluster examples/cluster.hcl -fleet examples/fleet.hcl
//
// The directory given by -dir is removed and recreated. With -skip-rotplan
// only the beds come up and are checked. With -everything "" the control
// plane runs alone; with -cluster "" or -fleet "" the fleet part is
// skipped.
package main
