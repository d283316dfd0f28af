package steps

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	vaultapi "github.com/hashicorp/vault/api"
	"github.com/zclconf/go-cty/cty"
)

// endpointSpec is what the checks that reach a TLS endpoint (tls,
// vault_status, vault_login) have in common.
func endpointSpec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"address":     &hcldec.AttrSpec{Name: "address", Type: cty.String, Required: true},
		"connect_to":  &hcldec.AttrSpec{Name: "connect_to", Type: cty.String},
		"server_name": &hcldec.AttrSpec{Name: "server_name", Type: cty.String},
		"ca_file":     &hcldec.AttrSpec{Name: "ca_file", Type: cty.String},
		"ca_pem":      &hcldec.AttrSpec{Name: "ca_pem", Type: cty.String},
		"client_cert": &hcldec.AttrSpec{Name: "client_cert", Type: cty.String},
		"client_key":  &hcldec.AttrSpec{Name: "client_key", Type: cty.String},
	}
}

// endpoint is the parsed common part of a tls, vault_status or
// vault_login block. connectTo, when set, is the "host:port" dialled in
// place of the address's own, as curl's --connect-to does: the address
// still gives the URL, hence the HTTP Host header and the default SNI,
// so that an edge proxy that picks its server block by name can be
// checked where that name does not resolve.
type endpoint struct {
	address, connectTo    string
	serverName            string
	caFile, caPEM         string
	clientCert, clientKey string
}

func parseEndpoint(c Config, needCA bool) (endpoint, []error) {
	e := endpoint{
		serverName: c.String("server_name"),
		caFile:     c.String("ca_file"),
		caPEM:      c.String("ca_pem"),
		clientCert: c.String("client_cert"),
		clientKey:  c.String("client_key"),
	}
	var errs []error
	var err error
	e.address, err = c.RequireString("address")
	errs = append(errs, err)
	if c.Set("connect_to") && c.Known("connect_to") {
		e.connectTo = c.String("connect_to")
		if err := checkConnectTo(e.connectTo); err != nil {
			errs = append(errs, attrErr(c.Path("connect_to"), "%v", err))
		}
	}
	if c.Set("ca_file") && c.Set("ca_pem") {
		errs = append(errs, attrErr(c.Path("ca_pem"), "give ca_file or ca_pem, not both"))
	}
	if needCA && !c.Set("ca_file") && !c.Set("ca_pem") {
		errs = append(errs, attrErr(c.Path("address"), "a CA to verify against is required: set ca_file or ca_pem"))
	}
	if c.Known("ca_file") && c.Set("ca_file") && e.caFile == "" {
		errs = append(errs, attrErr(c.Path("ca_file"), "must not be empty (is VAULT_CACERT exported?)"))
	}
	if c.Set("client_cert") != c.Set("client_key") {
		errs = append(errs, attrErr(c.Path("client_cert"), "client_cert and client_key go together"))
	}
	return e, errs
}

// checkConnectTo accepts "host:port" with a host and a port from 1 to
// 65535, as a dial needs it: no scheme, no path.
func checkConnectTo(s string) error {
	const want = `give the "host:port" to connect to, as in "127.0.0.1:22300"`
	if s == "" {
		return fmt.Errorf("must not be empty: %s, or leave connect_to out to connect to the address", want)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, "/ ") {
		return fmt.Errorf("%q is not a host and port: %s", s, want)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("%q: the port must be a number from 1 to 65535", s)
	}
	return nil
}

// overNetwork implements network for the checks that reach an endpoint.
func (endpoint) overNetwork() {}

// target implements check for the checks that reach an endpoint.
func (e endpoint) target() string { return e.address }

// detail is what the preview says of the endpoint after its address: the
// SNI it sends and where it connects, when either is not the address's.
func (e endpoint) detail() string {
	if e.serverName != "" {
		return " (SNI " + e.serverName + ")" + e.via()
	}
	return e.via()
}

// dialAddress is the "host:port" a connection to the endpoint dials.
func (e endpoint) dialAddress() string {
	if e.connectTo != "" {
		return e.connectTo
	}
	return hostPort(e.address)
}

// via names, for a message, the address dialled in place of the
// endpoint's own; "" when it is the endpoint's.
func (e endpoint) via() string {
	if e.connectTo == "" {
		return ""
	}
	return " via " + e.connectTo
}

// dialTimeout bounds a connection to an endpoint: a host that drops
// packets must not take a whole check's timeout for one attempt.
const dialTimeout = 10 * time.Second

// vaultClient makes a Vault client of the check's own, with no token, for
// the endpoint's address (https:// unless it says otherwise) and TLS
// settings, so the TLS handshake, client certificate included, is made
// anew on each attempt. With connect_to, every connection it makes dials
// that address instead, and no proxy. The caller closes its idle
// connections.
func (e endpoint) vaultClient() (client *vaultapi.Client, addr string, err error) {
	addr = e.address
	if !strings.Contains(addr, "://") {
		addr = "https://" + addr
	}
	// The Vault client reads the same files; reading them here first
	// tells a file that will never do from an endpoint that is not ready.
	if _, err := e.tlsConfig(); err != nil {
		return nil, addr, err
	}
	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if e.connectTo != "" {
		dialer := &net.Dialer{Timeout: dialTimeout}
		dial = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, e.connectTo)
		}
	}
	client, err = newVaultClient(addr, &vaultapi.TLSConfig{
		CACert:        e.caFile,
		CACertBytes:   []byte(e.caPEM),
		ClientCert:    e.clientCert,
		ClientKey:     e.clientKey,
		TLSServerName: e.serverName,
	}, 0, dial)
	return client, addr, err
}

func (e endpoint) tlsConfig() (*tls.Config, error) {
	pool := x509.NewCertPool()
	pemData := []byte(e.caPEM)
	if e.caFile != "" {
		var err error
		if pemData, err = readInput("ca_file", e.caFile); err != nil {
			return nil, err
		}
	}
	if !pool.AppendCertsFromPEM(pemData) {
		if e.caFile == "" {
			return nil, &inputError{arg: "ca_pem", err: errors.New("ca_pem holds no PEM certificate")}
		}
		return nil, &inputError{arg: "ca_file", paths: []string{e.caFile}, err: fmt.Errorf("ca_file %s holds no PEM certificate", e.caFile)}
	}
	conf := &tls.Config{RootCAs: pool, ServerName: e.serverName, MinVersion: tls.VersionTLS12}
	if conf.ServerName == "" {
		conf.ServerName, _, _ = net.SplitHostPort(hostPort(e.address))
	}
	if e.clientCert != "" {
		pair, err := loadKeyPair(e.clientCert, e.clientKey, "client_cert", "client_key")
		if err != nil {
			return nil, err
		}
		conf.Certificates = []tls.Certificate{pair}
	}
	return conf, nil
}

// hostPort accepts "host:port" or a URL such as "https://host:port".
func hostPort(address string) string {
	if u, err := url.Parse(address); err == nil && u.Host != "" {
		if u.Port() == "" {
			return net.JoinHostPort(u.Hostname(), "443")
		}
		return u.Host
	}
	return address
}
