package steps

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testCA is a small certificate authority made at test time: a root, an
// intermediate signed by it, and leaves signed by the intermediate.
type testCA struct {
	root, inter       *x509.Certificate
	rootKey, interKey *ecdsa.PrivateKey
	rootFile          string // the root alone, PEM
}

var nextSerial int64 = 1000

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca := &testCA{}
	ca.root, ca.rootKey = makeCert(t, "test root", nil, nil, true, nil)
	ca.inter, ca.interKey = makeCert(t, "test intermediate", ca.root, ca.rootKey, true, nil)
	ca.rootFile = filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(ca.rootFile, pemCert(ca.root), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// leaf issues a server certificate for names, signed by the intermediate.
func (ca *testCA) leaf(t *testing.T, names ...string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	return makeCert(t, names[0], ca.inter, ca.interKey, false, names)
}

func makeCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool, names []string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	nextSerial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(nextSerial),
		Subject:      pkix.Name{CommonName: cn},
		// Valid on synctest's clock too, which starts at 2000-01-01.
		NotBefore:             time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// serveTLS serves a certificate chain on a loopback port until the test
// ends, completing handshakes and closing. It returns "127.0.0.1:PORT".
func serveTLS(t *testing.T, key *ecdsa.PrivateKey, chain ...*x509.Certificate) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveTLSOn(t, l, key, chain...)
}

// serveTLSOn serves a certificate chain on inner as serveTLS does.
func serveTLSOn(t *testing.T, inner net.Listener, key *ecdsa.PrivateKey, chain ...*x509.Certificate) string {
	t.Helper()
	l := tls.NewListener(inner, &tls.Config{Certificates: []tls.Certificate{servedCert(key, chain...)}})
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				_ = conn.(*tls.Conn).Handshake()
			}()
		}
	}()
	return l.Addr().String()
}

// servedCert is a key and the chain served with it.
func servedCert(key *ecdsa.PrivateKey, chain ...*x509.Certificate) tls.Certificate {
	cert := tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert
}
