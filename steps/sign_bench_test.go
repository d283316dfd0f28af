package steps

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// BenchmarkIssueVsSignRSA2048 gets RSA 2048 certificates for the same name
// from the real Vault (ROTPLAN_VAULT_BIN) through issue, where Vault
// generates the key, and through sign, where rotplan does and Vault signs a
// CSR. The two alternate, one certificate each per iteration and in turns
// first, so that this machine's drift touches both alike; it reports each
// one's wall time and the CPU time Vault spent on it (from /proc), and
// their ratios, measured in the same run. A benchmark, never a test: it
// asserts no timing.
//
//	ROTPLAN_VAULT_BIN=... go test -run XXX -bench IssueVsSign -benchtime 50x ./steps/
func BenchmarkIssueVsSignRSA2048(b *testing.B) {
	v := testvault.StartT(b)
	ctx := b.Context()
	env := vaultEnv(nil, adminConnection(v))
	args := map[string]cty.Value{
		"mount": cty.StringVal("pki-prod"), "role": cty.StringVal("vault-server"),
		"common_name": cty.StringVal("vault.prod.privsec.ch"), "ttl": cty.StringVal("1h"),
	}
	kinds := []struct {
		name string
		step Step
		cfg  Config
	}{
		{"issue", &Issue{}, testConfig(b, (&Issue{}).Spec(), args)},
		{"sign", &Sign{}, testConfig(b, (&Sign{}).Spec(), withArgs(args, "key_type", cty.StringVal("rsa"), "key_bits", cty.NumberIntVal(2048)))},
	}
	if err := kinds[0].step.(Preparer).Prepare(ctx, env, kinds[0].cfg); err != nil {
		b.Fatal(err)
	}
	var wall, vaultCPU [2]time.Duration
	n := 0
	for b.Loop() {
		for j := range kinds {
			k := (n + j) % 2
			cpu0 := processCPU(b, v.PID())
			start := time.Now()
			if _, err := kinds[k].step.Apply(ctx, env, kinds[k].cfg); err != nil {
				b.Fatalf("%s: %v", kinds[k].name, err)
			}
			wall[k] += time.Since(start)
			vaultCPU[k] += processCPU(b, v.PID()) - cpu0
		}
		n++
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(n) }
	b.ReportMetric(ms(wall[0]), "issue-ms/cert")
	b.ReportMetric(ms(wall[1]), "sign-ms/cert")
	b.ReportMetric(ms(vaultCPU[0]), "issue-vault-cpu-ms/cert")
	b.ReportMetric(ms(vaultCPU[1]), "sign-vault-cpu-ms/cert")
	b.ReportMetric(float64(wall[1])/float64(wall[0]), "sign/issue-wall")
	if vaultCPU[1] > 0 {
		b.ReportMetric(float64(vaultCPU[0])/float64(vaultCPU[1]), "issue/sign-vault-cpu")
	}
	b.Logf("%d certificates each: issue %.1f ms wall, %.1f ms of Vault CPU; sign %.1f ms wall, %.1f ms of Vault CPU",
		n, ms(wall[0]), ms(vaultCPU[0]), ms(wall[1]), ms(vaultCPU[1]))
}

// withArgs returns args with more name, value pairs.
func withArgs(args map[string]cty.Value, more ...any) map[string]cty.Value {
	out := map[string]cty.Value{}
	for k, v := range args {
		out[k] = v
	}
	for i := 0; i < len(more); i += 2 {
		out[more[i].(string)] = more[i+1].(cty.Value)
	}
	return out
}

// processCPU is the user and system CPU time a process has used, from
// /proc/PID/stat (in clock ticks, 100 a second on Linux).
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("Vault's CPU time: %v", err)
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (utime and stime are fields 14 and 15).
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("reading /proc/%d/stat: %q", pid, raw)
	}
	return time.Duration(utime+stime) * (time.Second / 100)
}
