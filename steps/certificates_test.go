package steps

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/remote"
	"github.com/zclconf/go-cty/cty"
)

// certificateDir holds a certificate, a private key and a file of text, for
// the CertificateHolder tests; the certificate's serial comes back as
// SerialHex writes it.
func certificateDir(t *testing.T) (dir, serial string) {
	t.Helper()
	dir = t.TempDir()
	c, _ := makeCert(t, "watched", nil, nil, false, []string{"watched.example"})
	for name, content := range map[string]string{
		"cert.pem": string(pemCert(c)),
		"key.pem":  testKey,
		"note.txt": "not PEM\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, SerialHex(c)
}

// wantCertificates fails the test unless got names exactly the files want
// does, each with a certificate of serial or with an error that is (errors.Is)
// want's, and the same RenewBefore.
func wantCertificates(t *testing.T, got []CertificateFile, serial string, want []CertificateFile) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d certificate files %#v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Host != w.Host || g.Path != w.Path || g.RenewBefore != w.RenewBefore {
			t.Errorf("file %d: host %q path %q renew_before %s, want %q, %q and %s", i, g.Host, g.Path, g.RenewBefore, w.Host, w.Path, w.RenewBefore)
		}
		switch {
		case w.Err == nil && (g.Err != nil || g.Certificate == nil || SerialHex(g.Certificate) != serial):
			t.Errorf("%s: certificate %v, error %v; want serial %s", g.Path, g.Certificate != nil, g.Err, serial)
		case w.Err != nil && (g.Certificate != nil || !errors.Is(g.Err, w.Err)):
			t.Errorf("%s: certificate %v, error %v; want no certificate and an error that is %v", g.Path, g.Certificate != nil, g.Err, w.Err)
		}
	}
}

func TestIssueCertificates(t *testing.T) {
	dir, serial := certificateDir(t)
	base := map[string]cty.Value{
		"mount": cty.StringVal("pki"), "role": cty.StringVal("r"), "common_name": cty.StringVal("watched.example"),
	}
	for _, c := range []struct {
		name        string
		current     cty.Value
		renewBefore cty.Value
		want        []CertificateFile
	}{
		{name: "current certificate", current: cty.StringVal(filepath.Join(dir, "cert.pem")), renewBefore: cty.StringVal("240h"),
			want: []CertificateFile{{Path: filepath.Join(dir, "cert.pem"), RenewBefore: 240 * time.Hour}}},
		{name: "missing", current: cty.StringVal(filepath.Join(dir, "gone.pem")), renewBefore: cty.StringVal("1h"),
			want: []CertificateFile{{Path: filepath.Join(dir, "gone.pem"), Err: fs.ErrNotExist, RenewBefore: time.Hour}}},
		{name: "a key, no certificate", current: cty.StringVal(filepath.Join(dir, "key.pem")), renewBefore: cty.StringVal("1h"),
			want: []CertificateFile{{Path: filepath.Join(dir, "key.pem"), Err: ErrNoCertificate, RenewBefore: time.Hour}}},
		{name: "a directory", current: cty.StringVal(dir), renewBefore: cty.StringVal("1h"),
			want: []CertificateFile{{Path: dir, Err: ErrNoCertificate, RenewBefore: time.Hour}}},
		{name: "current unknown", current: cty.UnknownVal(cty.String), renewBefore: cty.StringVal("1h")},
		{name: "no current", renewBefore: cty.NilVal},
		// Validate reports the half-set pair; there is nothing to watch.
		{name: "current without renew_before", current: cty.StringVal(filepath.Join(dir, "cert.pem"))},
	} {
		t.Run(c.name, func(t *testing.T) {
			vals := map[string]cty.Value{"current": c.current, "renew_before": c.renewBefore}
			for k, v := range base {
				vals[k] = v
			}
			got := (*Issue)(nil).Certificates(context.Background(), nil, testConfig(t, (*Issue)(nil).Spec(), vals))
			wantCertificates(t, got, serial, c.want)
		})
	}
}

// writeCertificateCases are the write blocks TestWriteCertificates and
// TestWriteCertificatesOnHost ask for their certificates, on host ("" for
// none), with the files of certificateDir.
type writeCertificateCase struct {
	name          string
	path, content cty.Value
	want          []CertificateFile
}

func writeCertificateCases(t *testing.T, dir, host string) []writeCertificateCase {
	other, _ := makeCert(t, "other", nil, nil, false, nil)
	known := cty.StringVal(string(pemCert(other)))
	return []writeCertificateCase{
		{name: "holds a certificate", path: cty.StringVal(filepath.Join(dir, "cert.pem")), content: cty.UnknownVal(cty.String),
			want: []CertificateFile{{Host: host, Path: filepath.Join(dir, "cert.pem")}}},
		// What is in place counts, not what the run would write.
		{name: "holds a certificate, another to come", path: cty.StringVal(filepath.Join(dir, "cert.pem")), content: known,
			want: []CertificateFile{{Host: host, Path: filepath.Join(dir, "cert.pem")}}},
		{name: "holds a key", path: cty.StringVal(filepath.Join(dir, "key.pem")), content: cty.UnknownVal(cty.String).Mark("sensitive")},
		{name: "holds text", path: cty.StringVal(filepath.Join(dir, "note.txt")), content: cty.StringVal("text\n")},
		{name: "missing, content unknown", path: cty.StringVal(filepath.Join(dir, "new.pem")), content: cty.UnknownVal(cty.String)},
		{name: "missing, a certificate to come", path: cty.StringVal(filepath.Join(dir, "new.pem")), content: known,
			want: []CertificateFile{{Host: host, Path: filepath.Join(dir, "new.pem"), Err: fs.ErrNotExist}}},
		{name: "holds a key, a certificate to come", path: cty.StringVal(filepath.Join(dir, "key.pem")), content: known,
			want: []CertificateFile{{Host: host, Path: filepath.Join(dir, "key.pem"), Err: ErrNoCertificate}}},
		{name: "path unknown", path: cty.UnknownVal(cty.String), content: known},
	}
}

func TestWriteCertificates(t *testing.T) {
	dir, serial := certificateDir(t)
	for _, c := range writeCertificateCases(t, dir, "") {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{"path": c.path, "content": c.content})
			wantCertificates(t, (*Write)(nil).Certificates(context.Background(), nil, cfg), serial, c.want)
		})
	}
}

// TestWriteCertificatesOnHost: the certificate files of a write on a host
// are read there, and say which host.
func TestWriteCertificatesOnHost(t *testing.T) {
	f, env, _ := testHostEnv(t)
	dir, serial := certificateDir(t)
	ctx := context.Background()
	if err := f.Controller.Do(func() error { return env.onHost(ctx, func(*remote.Conn) error { return nil }) }); err != nil {
		t.Fatal(err)
	}
	for _, c := range writeCertificateCases(t, dir, `host.web["h1"]`) {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(t, (*Write)(nil).Spec(), map[string]cty.Value{"path": c.path, "content": c.content})
			wantCertificates(t, (*Write)(nil).Certificates(ctx, env, cfg), serial, c.want)
		})
	}
}

// TestNoCertificateMessage: the error that says a file holds no certificate
// reads as it did before it could be told apart with errors.Is; previews
// show it.
func TestNoCertificateMessage(t *testing.T) {
	dir, _ := certificateDir(t)
	_, err := readCertificateFile(filepath.Join(dir, "note.txt"))
	if want := filepath.Join(dir, "note.txt") + " holds no PEM certificate"; err == nil || err.Error() != want || !errors.Is(err, ErrNoCertificate) {
		t.Errorf("error %v, want %q and ErrNoCertificate", err, want)
	}
	_, err = readCertificateFile(dir)
	if err == nil || !strings.Contains(err.Error(), "is not a regular file") || !errors.Is(err, ErrNoCertificate) {
		t.Errorf("error %v, want \"is not a regular file\" and ErrNoCertificate", err)
	}
}
