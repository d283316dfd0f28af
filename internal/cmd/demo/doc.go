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
// changed. It exits non-zero when a check fails, and when a process it
// started is left after Vault's stop.
//
// Usage:
//
//	go run ./internal/cmd/demo -vault BIN -rotplan BIN -dir .demo -plan examples/prod.hcl -everything examples/everything.hcl
//
// The directory given by -dir is removed and recreated. With -skip-rotplan
// only the bed comes up and is checked. With -everything "" the control
// plane runs alone.
package main
