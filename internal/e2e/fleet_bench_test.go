package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/rotplan/rotplan/internal/testweb"
)

// fleetBenchHosts is how many nginx hosts BenchmarkFleet rotates.
const fleetBenchHosts = 8

// fleetShell is the shell loop BenchmarkFleet measures rotplan against:
// the work of examples/fleet.hcl, host by host in batches of K, as an
// operator would script it with ssh and scp. Per host, from the
// controller: ssh (copies of the files there to undo with, then the key
// made there by openssl, owner-only from its creation, and its CSR, which
// alone comes back), the CSR signed by Vault (pki-prod/sign, one login
// for the whole run, as rotplan's), scp (the certificate, mode kept, to a
// new name), ssh (owner and mode, flushed, renamed into place, nginx -t,
// reload, and the wait for the old workers to exit, as the plan's
// reload), and the TLS check from here until the host serves the new
// serial. The key never leaves the host, as with the plan's sign.
const fleetShell = `#!/bin/sh
# usage: fleet.sh K NAME=ADDRESS=DIR ...   (environment: VAULT_*, VAULT_BIN,
# SSH_CONFIG, SERVER_NAME, ROLE, CA_FILE, NGINX)
set -eu
k=$1; shift
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
VAULT_TOKEN=$("$VAULT_BIN" login -method=cert -token-only)
export VAULT_TOKEN

rotate() {
	name=$1 addr=$2 dir=$3
	t="$work/$name"
	mkdir -m 700 "$t"
	ssh -F "$SSH_CONFIG" "$name" "cd '$dir/tls' && mkdir -p -m 700 .rotplan-backups && cp -p web.key .rotplan-backups/web.key && cp -p web.crt .rotplan-backups/web.crt && (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out web.key.new) && openssl req -new -key web.key.new -subj '/CN=$SERVER_NAME'" >"$t/web.csr"
	"$VAULT_BIN" write -format=json "pki-prod/sign/$ROLE" csr=@"$t/web.csr" common_name="$SERVER_NAME" ttl=720h >"$t/signed.json"
	jq -r '.data.certificate, .data.issuing_ca' "$t/signed.json" >"$t/web.crt.new"
	chmod 644 "$t/web.crt.new"
	serial=$(jq -r .data.serial_number "$t/signed.json" | tr -d : | tr a-f A-F)
	scp -q -p -F "$SSH_CONFIG" "$t/web.crt.new" "$name:$dir/tls/"
	ssh -F "$SSH_CONFIG" "$name" "cd '$dir/tls' && chown 0:0 web.key.new web.crt.new && chmod 600 web.key.new && chmod 644 web.crt.new && sync web.key.new web.crt.new && mv web.crt.new web.crt && mv web.key.new web.key && sync . && '$NGINX' -t -q -c '$dir/nginx.conf' -p '$dir/' && old=\$(pgrep -P \$(cat '$dir/nginx.pid')) && '$NGINX' -s reload -c '$dir/nginx.conf' -p '$dir/' && for pid in \$old; do while kill -0 \$pid 2>/dev/null; do sleep 0.02; done; done"
	tries=0
	until openssl s_client -connect "$addr:443" -servername "$SERVER_NAME" -CAfile "$CA_FILE" -verify_return_error </dev/null 2>/dev/null |
		openssl x509 -noout -serial 2>/dev/null | grep -qx "serial=$serial"; do
		tries=$((tries + 1))
		if [ "$tries" -ge 1500 ]; then
			echo "$name does not serve serial $serial" >&2
			return 1
		fi
		sleep 0.02
	done
}

while [ $# -gt 0 ]; do
	pids=
	i=0
	while [ $# -gt 0 ] && [ "$i" -lt "$k" ]; do
		name=${1%%=*} rest=${1#*=}
		rotate "$name" "${rest%%=*}" "${rest#*=}" &
		pids="$pids $!"
		i=$((i + 1))
		shift
	done
	for p in $pids; do
		wait "$p"
	done
done
`

// BenchmarkFleet rotates the certificate of fleetBenchHosts nginx hosts
// (internal/testweb) in batches of k, with rotplan (examples/fleet.hcl,
// run from the controller as an operator would) and with fleetShell,
// doing the same work, one after the other in each iteration, so that
// both meet the same machine. It reports, per k, the wall time per host
// of each and their ratio. A benchmark, never a test: make bench runs it.
func BenchmarkFleet(b *testing.B) {
	w := testweb.Start(b, fleetBenchHosts)
	vault := os.Getenv(testvault.EnvBinary)
	script := filepath.Join(b.TempDir(), "fleet.sh")
	if err := os.WriteFile(script, []byte(fleetShell), 0o755); err != nil {
		b.Fatal(err)
	}
	var hosts []string
	for _, s := range fleetBatches(w, len(w.Sites))[0] { // key order
		hosts = append(hosts, fmt.Sprintf("%s=%s=%s", s.Host.Name, s.Host.Addr, s.Prefix))
	}
	ctx := context.Background()
	// changed fails the benchmark unless every host serves a leaf it did
	// not serve before.
	changed := func(b *testing.B, before map[string]string, how string) map[string]string {
		b.Helper()
		now := map[string]string{}
		for _, s := range w.Sites {
			chain, err := w.Served(ctx, s)
			if err != nil {
				b.Fatalf("after %s: %s: %v", how, s.Host.Name, err)
			}
			now[s.Host.Name] = chain[0].SerialNumber.String()
			if before != nil && now[s.Host.Name] == before[s.Host.Name] {
				b.Fatalf("after %s: %s still serves its old certificate", how, s.Host.Name)
			}
		}
		return now
	}
	for _, k := range []int{1, 2, 4, fleetBenchHosts} {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			r := newFleetRun(b, w, k, "20ms")
			served := changed(b, nil, "")
			var rotplanTime, shellTime time.Duration
			b.ResetTimer()
			for range b.N {
				begin := time.Now()
				res := r.rotplan(b, ctx, "run")
				rotplanTime += time.Since(begin)
				if res.exit != 0 {
					b.Fatalf("rotplan run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
				}
				served = changed(b, served, "rotplan")

				cmd := w.Fleet.Controller.Command(ctx, "sh", append([]string{script, fmt.Sprint(k)}, hosts...)...)
				cmd.Env = append(cleanEnv(), w.Environ()...)
				cmd.Env = append(cmd.Env, "VAULT_BIN="+vault, "SSH_CONFIG="+w.Fleet.SSHConfig, "SERVER_NAME="+testweb.ServerName,
					"ROLE="+testvault.LeafRole(testweb.App), "CA_FILE="+w.Vault.RootCAFile, "NGINX="+w.Nginx)
				begin = time.Now()
				res = runCmd(b, cmd, 5*time.Minute)
				shellTime += time.Since(begin)
				if res.exit != 0 {
					b.Fatalf("shell loop: exit %d\n%s%s", res.exit, res.stdout, strings.TrimSpace(res.stderr))
				}
				served = changed(b, served, "the shell loop")
			}
			b.StopTimer()
			perHost := func(d time.Duration) float64 {
				return float64(d.Milliseconds()) / float64(b.N*fleetBenchHosts)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(perHost(rotplanTime), "rotplan-ms/host")
			b.ReportMetric(perHost(shellTime), "shell-ms/host")
			b.ReportMetric(float64(rotplanTime)/float64(shellTime), "rotplan/shell")
		})
	}
}
