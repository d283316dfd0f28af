package testvault

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testhosts"
)

// TestCluster brings up the Raft cluster on a fleet of three hosts: three
// voters, autopilot healthy, the first node active, each node running as
// the Vault user and serving, from the controller, a certificate for its
// own address and the server name, issued by the cluster's PKI.
func TestCluster(t *testing.T) {
	f := testhosts.Start(t, 3)
	c := StartClusterT(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	st, err := c.Autopilot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Healthy(st); err != nil {
		t.Errorf("autopilot: %v\n%s", err, st)
	}
	if len(st.Voters) != 3 {
		t.Errorf("voters %v, want 3", st.Voters)
	}
	active, err := c.Active(ctx)
	if err != nil || active != c.Nodes[0] {
		t.Errorf("active node: %v, %v; want %s", active, err, c.Nodes[0].ID)
	}
	if st.Leader != c.Nodes[0].ID {
		t.Errorf("autopilot's leader %q, want %s", st.Leader, c.Nodes[0].ID)
	}

	for _, n := range c.Nodes {
		chain, err := c.ServedChain(ctx, n)
		if err != nil {
			t.Errorf("%s: %v", n.ID, err)
			continue
		}
		leaf := chain[0]
		if !slices.Contains(leaf.DNSNames, c.ServerName) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IP(n.Host.Addr.AsSlice())) {
			t.Errorf("%s serves a certificate for %v %v, want %s and %s", n.ID, leaf.DNSNames, leaf.IPAddresses, c.ServerName, n.Host.Addr)
		}
		onDisk, err := ReadCertificates(n.CertFile)
		if err != nil || onDisk[0].SerialNumber.Cmp(leaf.SerialNumber) != 0 {
			t.Errorf("%s serves serial %x, its %s holds another (%v)", n.ID, leaf.SerialNumber, n.CertFile, err)
		}
		// Vault runs as the Vault user, which owns the key.
		if uid := procUID(t, n.PID()); uid != c.UID {
			t.Errorf("%s runs as uid %d, want %d (%s)", n.ID, uid, c.UID, c.Owner)
		}
		if st := statT(t, n.KeyFile); st.Mode&0o777 != 0o600 || int(st.Uid) != c.UID {
			t.Errorf("%s: key %s has mode %o and uid %d, want 0600 and %d", n.ID, n.KeyFile, st.Mode&0o777, st.Uid, c.UID)
		}
	}
}
