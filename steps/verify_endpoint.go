package steps

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
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
		"server_name": &hcldec.AttrSpec{Name: "server_name", Type: cty.String},
		"ca_file":     &hcldec.AttrSpec{Name: "ca_file", Type: cty.String},
		"ca_pem":      &hcldec.AttrSpec{Name: "ca_pem", Type: cty.String},
		"client_cert": &hcldec.AttrSpec{Name: "client_cert", Type: cty.String},
		"client_key":  &hcldec.AttrSpec{Name: "client_key", Type: cty.String},
	}
}

// endpoint is the parsed common part of a tls, vault_status or
// vault_login block.
type endpoint struct {
	address, serverName   string
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

// target implements check for the checks that reach an endpoint.
func (e endpoint) target() string { return e.address }

// detail is what the preview says of the endpoint after its address:
// the SNI it sends, when given.
func (e endpoint) detail() string {
	if e.serverName != "" {
		return " (SNI " + e.serverName + ")"
	}
	return ""
}

// dialTimeout bounds a connection to an endpoint: a host that drops
// packets must not take a whole check's timeout for one attempt.
const dialTimeout = 10 * time.Second

// vaultClient makes a Vault client of the check's own, with no token, for
// the endpoint's address (https:// unless it says otherwise) and TLS
// settings, so the TLS handshake, client certificate included, is made
// anew on each attempt. The caller closes its idle
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
	client, err = newVaultClient(addr, &vaultapi.TLSConfig{
		CACert:        e.caFile,
		CACertBytes:   []byte(e.caPEM),
		ClientCert:    e.clientCert,
		ClientKey:     e.clientKey,
		TLSServerName: e.serverName,
	}, 0)
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
