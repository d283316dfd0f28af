package steps

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/testhosts"
	"github.com/rotplan/rotplan/internal/testvault"
	"github.com/zclconf/go-cty/cty"
)

// clusterConfig is a verify step with a vault_cluster block.
func clusterConfig(t *testing.T, timeout string, block map[string]cty.Value) Config {
	t.Helper()
	return checkConfig(t, map[string]cty.Value{"timeout": cty.StringVal(timeout), "interval": cty.StringVal("100ms")}, "vault_cluster", block)
}

// sessionEnv returns an Env whose Vault session is open already, with
// client: the cluster's nodes are reached through the fleet's namespaces,
// which a connection the session makes itself cannot do.
func sessionEnv(log hclog.Logger, client *vaultapi.Client) *Env {
	env := NewEnv(log)
	env.session.once.Do(func() { env.session.client = client })
	env.session.opened.Store(true)
	return env
}

func TestVerifyClusterValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block map[string]cty.Value
		path  string
		want  string
	}{
		{"neither voters nor a count", nil, "vault_cluster.voters", "name the voters"},
		{"no voters", map[string]cty.Value{"voters": stringListVal()}, "vault_cluster.voters", "name the voters"},
		{"an empty id", map[string]cty.Value{"voters": stringListVal("a", " ")}, "vault_cluster.voters", "element 2 is empty"},
		{"an id twice", map[string]cty.Value{"voters": stringListVal("a", "b", "a")}, "vault_cluster.voters", `"a" is there twice`},
		{"a count of 0", map[string]cty.Value{"voter_count": cty.NumberIntVal(0)}, "vault_cluster.voter_count", "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Verify{}).Validate(clusterConfig(t, "1s", tc.block))
			wantAttrErr(t, err, tc.path)
			wantErrContains(t, err, tc.want)
		})
	}
	for _, block := range []map[string]cty.Value{
		{"voters": stringListVal("a", "b", "c")},
		{"voter_count": cty.NumberIntVal(3)},
		{"voters": stringListVal("a"), "voter_count": cty.NumberIntVal(3)},
	} {
		wantValid(t, (&Verify{}).Validate(clusterConfig(t, "1s", block)))
	}
}

// TestVerifyClusterAgainstRaft runs the check against a 3-node Raft
// cluster on a fleet, as its admin identity (whose policy reads the
// autopilot state): it passes with every voter there, names the node that
// is missing, is not a voter or is unhealthy, and passes again once a
// stopped node is back.
func TestVerifyClusterAgainstRaft(t *testing.T) {
	f := testhosts.Start(t, 3)
	c := testvault.StartClusterT(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Through a standby: it forwards to the active node.
	admin, err := c.Admin(ctx, c.Nodes[1])
	if err != nil {
		t.Fatal(err)
	}
	ve := &Verify{}
	apply := func(t *testing.T, timeout string, block map[string]cty.Value) (cty.Value, error, string) {
		t.Helper()
		env, logged := testEnv(t)
		out, err := ve.Apply(ctx, sessionEnv(env.Log, admin), clusterConfig(t, timeout, block))
		return out, err, logged.String()
	}

	t.Run("every voter healthy", func(t *testing.T) {
		for _, block := range []map[string]cty.Value{
			{"voters": stringListVal("vault-1", "vault-2", "vault-3")},
			{"voter_count": cty.NumberIntVal(3)},
		} {
			out, err, _ := apply(t, "10s", block)
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			wantOutputs(t, ve, out)
		}
		env, _ := testEnv(t)
		pv, err := ve.Plan(ctx, sessionEnv(env.Log, admin), clusterConfig(t, "1s", map[string]cty.Value{"voter_count": cty.NumberIntVal(3)}))
		if err != nil || len(pv.Now) != 1 || pv.Now[0].Value != "healthy, leader vault-1, voters vault-1, vault-2, vault-3 (failure tolerance 1)" {
			t.Errorf("preview: %+v, %v", pv, err)
		}
	})

	t.Run("a node that is not there", func(t *testing.T) {
		_, err, _ := apply(t, "300ms", map[string]cty.Value{"voters": stringListVal("vault-1", "vault-2", "vault-4")})
		wantErrContains(t, err, "vault_cluster check of the Vault cluster still failing after", "node vault-4 is not in the cluster", "autopilot: healthy")
	})
	t.Run("too few voters", func(t *testing.T) {
		_, err, _ := apply(t, "300ms", map[string]cty.Value{"voter_count": cty.NumberIntVal(4)})
		wantErrContains(t, err, "3 healthy voters, want at least 4")
	})

	// A node that stops answering: autopilot calls it unhealthy once its
	// last contact is older than the threshold (1s here, 10s by default),
	// and the check names it until it is back.
	root, err := c.Root(c.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Logical().WriteWithContext(ctx, "sys/storage/raft/autopilot/configuration", map[string]any{"last_contact_threshold": "1s"}); err != nil {
		t.Fatal(err)
	}
	h3 := c.Nodes[2]
	if err := syscall.Kill(h3.PID(), syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(h3.PID(), syscall.SIGCONT)
		}
	}()
	for {
		st, err := c.Autopilot(ctx)
		if err == nil && st.Servers[h3.ID] != nil && !st.Servers[h3.ID].Healthy {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("h3 stopped, and autopilot still calls it healthy: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Run("a node unhealthy", func(t *testing.T) {
		_, err, _ := apply(t, "300ms", map[string]cty.Value{"voters": stringListVal("vault-1", "vault-2", "vault-3")})
		wantErrContains(t, err, "node vault-3 is unhealthy", "autopilot: unhealthy")
	})
	if err := syscall.Kill(h3.PID(), syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	// Back to the default threshold: 1s was to see the stopped node soon,
	// and on a loaded machine (CI, 2 cores) followers' last contact was
	// seen at 4s for 30s on end, so the running ones were called
	// unhealthy too.
	if _, err := root.Logical().WriteWithContext(ctx, "sys/storage/raft/autopilot/configuration", map[string]any{"last_contact_threshold": "10s"}); err != nil {
		t.Fatal(err)
	}
	t.Run("healthy again: the check waits for it", func(t *testing.T) {
		_, err, logged := apply(t, "30s", map[string]cty.Value{"voters": stringListVal("vault-1", "vault-2", "vault-3")})
		if err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if !strings.Contains(logged, "check not passing yet") || !strings.Contains(logged, "check passed") {
			t.Errorf("the check did not wait for h3, or did not pass; log:\n%s", logged)
		}
	})
}

// TestVerifyClusterWithoutRaft: a Vault with file storage has no
// autopilot; the check fails at once and says so.
func TestVerifyClusterWithoutRaft(t *testing.T) {
	v := testvault.StartT(t)
	env, _ := testEnv(t)
	env = sessionEnv(env.Log, v.Root())
	_, err := (&Verify{}).Apply(context.Background(), env, clusterConfig(t, "30s", map[string]cty.Value{"voter_count": cty.NumberIntVal(1)}))
	wantAttrErr(t, err, "vault_cluster")
	wantErrContains(t, err, "not integrated storage (Raft)", "not retried")
}
