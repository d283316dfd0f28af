// Command demo shows rotplan rotating the TLS certificate of a real Vault
// listener and the login certificates of real Vault Agents. It starts the
// test harness Vault (internal/testvault) in a fresh directory, runs
// `rotplan plan`, `rotplan run` and `rotplan status` with the control-plane
// plan against it and checks that the served certificate changed. Then,
// as root, it sets up the seed's apps with their agents, runs the agents
// plan and checks from outside, per app, that the agent's certificate
// changed, the agent was restarted and the token in its sink was issued
// for the new certificate (the serial Vault's cert auth recorded, looked up
// with the harness's root client; the token is never shown). Not as root,
// it says so and skips only the agents part. It exits non-zero when a check
// fails, and when a process it started is left after Vault's stop.
//
// Usage:
//
//	go run ./internal/cmd/demo -vault BIN -rotplan BIN -dir .demo -plan examples/prod.hcl -agents examples/agents.hcl
//
// The directory given by -dir is removed and recreated. With -skip-rotplan
// only the Vault part (and the agents' setup) runs: useful to check the
// harness. With -agents "" the agents part is left out.
package main
