package steps

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"
)

// TestVerifyCommandOnHost runs a command check on a real sshd host of a
// testhosts bed; any other check with on is refused.
func TestVerifyCommandOnHost(t *testing.T) {
	f, env, _ := testHostEnv(t)
	h := f.Hosts[0]
	ctx := context.Background()
	v := (*Verify)(nil)
	marker := filepath.Join(h.Home, "conf-ok")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	argv := func(words ...string) map[string]cty.Value {
		return map[string]cty.Value{"argv": stringListVal(words...)}
	}
	var out cty.Value
	err := f.Controller.Do(func() (err error) {
		out, err = v.Apply(ctx, env, checkConfig(t, nil, "command", argv("sh", "-c", `test -e "$1"`, "sh", marker)))
		return err
	})
	if err != nil || out.GetAttr("check").AsString() != "command" {
		t.Fatalf("apply: %#v, %v", out, err)
	}
	for _, tc := range []struct {
		name string
		argv map[string]cty.Value
		want []string
	}{
		{"exit 1 shows the output", argv("sh", "-c", "echo 'emerg: cannot load certificate' >&2; exit 1"), []string{"exited with status 1", "cannot load certificate", "not retried", h.Addr.String()}},
		{"program missing", argv("rotplan-no-such-program", "-t"), []string{"cannot run rotplan-no-such-program on", "not found there"}},
		{"timeout", argv("sh", "-c", "exec sleep 60"), []string{"timed out after 200ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Apply(ctx, env, checkConfig(t, map[string]cty.Value{"timeout": cty.StringVal("200ms")}, "command", tc.argv))
			wantAttrErr(t, err, "command.argv")
			wantErrContains(t, err, tc.want...)
		})
	}
	pv, err := v.Plan(ctx, env, checkConfig(t, nil, "command", argv("rotplan-no-such-program")))
	if err != nil || len(pv.Problems) != 1 || !strings.Contains(pv.Problems[0].Error(), "not found there") {
		t.Errorf("preview of a program the host lacks: %+v, %v", pv, err)
	}
	bundle := checkConfig(t, nil, "bundle", map[string]cty.Value{"file": cty.StringVal(marker), "root_file": cty.StringVal(marker)})
	_, err = v.Apply(ctx, env, bundle)
	wantAttrErr(t, err, "bundle")
	wantErrContains(t, err, "does not run on a host")

	// A check over the network takes on, to belong to the host for its
	// rollout, and looks from where rotplan runs: at a server on this
	// namespace's loopback, which the host cannot reach.
	ca := newTestCA(t)
	leaf, key := ca.leaf(t, "vault.prod.privsec.ch", "127.0.0.1")
	served := tlsCheck(t, map[string]cty.Value{
		"address": cty.StringVal(serveTLS(t, key, leaf, ca.inter)), "server_name": cty.StringVal("vault.prod.privsec.ch"),
		"ca_file": cty.StringVal(ca.rootFile), "expect_serial": cty.StringVal(SerialHex(leaf)),
	})
	if out, err := v.Apply(ctx, env, served); err != nil || out.GetAttr("served_serial").AsString() != SerialHex(leaf) {
		t.Errorf("a tls check with on: %#v, %v; want it passed from here", out, err)
	}
}
