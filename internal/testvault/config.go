package testvault

import (
	"fmt"
	"strings"
)

// serverConfig is a Vault server configuration as the harness writes it,
// for the single server (file storage, no clustering) and for the nodes
// of a cluster (Raft storage, a cluster address).
type serverConfig struct {
	pidFile string
	apiAddr string
	dataDir string
	// nodeID and clusterAddr make it a node of a Raft cluster; without
	// them the storage is a file backend and clustering is off.
	nodeID, clusterAddr string
	listeners           []listenerConfig
}

// listenerConfig is a tcp listener: plain HTTP without certFile, else TLS
// with that certificate and key, requiring client certificates signed by
// clientCAFile.
type listenerConfig struct {
	comment                         string
	address                         string
	certFile, keyFile, clientCAFile string
}

// render returns the configuration's HCL.
func (c serverConfig) render() (string, error) {
	var errs []error
	q := func(s string) string {
		out, err := hclQuote(s)
		errs = append(errs, err)
		return out
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# rotplan test harness (internal/testvault); generated, do not edit.\n")
	fmt.Fprintf(&b, "ui                 = false\n")
	fmt.Fprintf(&b, "disable_mlock      = true\n")
	fmt.Fprintf(&b, "log_level          = \"info\"\n")
	fmt.Fprintf(&b, "pid_file           = %s\n", q(c.pidFile))
	if c.nodeID == "" {
		// No cluster listener (file storage, single node): Vault would otherwise
		// listen on listener port+1, a port the harness did not reserve.
		fmt.Fprintf(&b, "disable_clustering = true\n")
	} else {
		fmt.Fprintf(&b, "cluster_addr       = %s\n", q(c.clusterAddr))
	}
	fmt.Fprintf(&b, "api_addr           = %s\n\n", q(c.apiAddr))
	if c.nodeID == "" {
		fmt.Fprintf(&b, "storage \"file\" {\n  path = %s\n}\n", q(c.dataDir))
	} else {
		// performance_multiplier 1 is Raft's timing for production (the
		// default, 5, is for development machines): elections in about a
		// second rather than five to fifteen. Autopilot promotes a server
		// that joined (a non-voter) to voter when it reconciles, every
		// 10s by default: every 2s here, so the bed is up sooner, and the
		// state it reports is refreshed every second (2s by default).
		fmt.Fprintf(&b, "storage \"raft\" {\n  path                         = %s\n  node_id                      = %s\n  performance_multiplier       = 1\n  autopilot_reconcile_interval = \"2s\"\n  autopilot_update_interval    = \"1s\"\n}\n", q(c.dataDir), q(c.nodeID))
	}
	for _, l := range c.listeners {
		fmt.Fprintf(&b, "\n# %s\nlistener \"tcp\" {\n", l.comment)
		if l.certFile == "" {
			fmt.Fprintf(&b, "  address     = %s\n  tls_disable = true\n}\n", q(l.address))
			continue
		}
		fmt.Fprintf(&b, "  address                            = %s\n", q(l.address))
		fmt.Fprintf(&b, "  tls_cert_file                      = %s\n", q(l.certFile))
		fmt.Fprintf(&b, "  tls_key_file                       = %s\n", q(l.keyFile))
		fmt.Fprintf(&b, "  tls_client_ca_file                 = %s\n", q(l.clientCAFile))
		fmt.Fprintf(&b, "  tls_require_and_verify_client_cert = true\n")
		fmt.Fprintf(&b, "}\n")
	}
	for _, err := range errs {
		if err != nil {
			return "", err
		}
	}
	return b.String(), nil
}
