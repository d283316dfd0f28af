package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
)

// testCertificate makes a self-signed certificate with the subject, serial
// and expiry given: what the metrics show of it is known in advance.
func testCertificate(t *testing.T, cn string, serial int64, notAfter time.Time) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    notAfter.Add(-720 * time.Hour),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkTime is when the tests' checks happen: 2026-01-02T03:04:05.678Z.
var checkTime = time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)

// metricsPreview is a preview of a plan like examples/prod.hcl, with the
// admin half not due, the server half due, a CA bundle whose path needs
// escaping, and two certificates that cannot be read.
func metricsPreview(t *testing.T) *engine.Preview {
	t.Helper()
	admin := testCertificate(t, "vault-admin-prod", 0x1a2b, time.Date(2026, 1, 20, 0, 0, 0, 0, time.UTC))
	server := testCertificate(t, "vault.prod.privsec.ch", 0x0102, time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC))
	ca := testCertificate(t, `CA "2026"`, 7, time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	const renew = 240 * time.Hour
	notThere := &fs.PathError{Op: "open", Path: "/srv/gone.crt", Err: syscall.ENOENT}
	denied := &fs.PathError{Op: "open", Path: "/srv/denied.crt", Err: syscall.EACCES}
	return &engine.Preview{Steps: []engine.StepPreview{
		{Addr: "issue.admin", Action: steps.NoChange, Skipped: true,
			Certificates: []steps.CertificateFile{{Path: "/srv/admin/admin.crt", Certificate: admin, RenewBefore: renew}}},
		{Addr: "write.admin_crt", Action: steps.NoChange, Skipped: true,
			Certificates: []steps.CertificateFile{{Path: "/srv/admin/admin.crt", Certificate: admin}}},
		{Addr: "issue.server", Action: steps.Replace,
			Certificates: []steps.CertificateFile{{Path: "/srv/tls/server.crt", Certificate: server, RenewBefore: renew}}},
		{Addr: "write.server_key", Action: steps.Replace},
		{Addr: "write.server_crt", Action: steps.Replace,
			Certificates: []steps.CertificateFile{{Path: "/srv/tls/server.crt", Certificate: server}}},
		{Addr: "write.ca", Action: steps.NoChange,
			Certificates: []steps.CertificateFile{{Path: "/srv/tls/ca \"x\"\\\n.pem", Certificate: ca}}},
		{Addr: "issue.gone", Action: steps.Create,
			Certificates: []steps.CertificateFile{{Path: "/srv/gone.crt", Err: notThere, RenewBefore: time.Hour}}},
		{Addr: "write.denied", Action: steps.NoChange,
			Certificates: []steps.CertificateFile{{Path: "/srv/denied.crt", Err: denied}}},
	}}
}

// The HELP and TYPE lines of each family, as the golden texts expect them.
const (
	headCheck = `# HELP rotplan_plan_last_check_timestamp_seconds When rotplan plan last checked the plan and wrote this file, in seconds since the Unix epoch.
# TYPE rotplan_plan_last_check_timestamp_seconds gauge
`
	headSuccess = `# HELP rotplan_plan_check_success 1 if the check found no error, 0 if a run of the plan would fail now (rotplan plan says why); the certificates that could be read are exported either way.
# TYPE rotplan_plan_check_success gauge
`
	headReadable = `# HELP rotplan_certificate_readable 1 if the certificate file could be read, 0 if not; the error label then says why: missing, permission_denied, no_certificate, unreadable.
# TYPE rotplan_certificate_readable gauge
`
	headNotAfter = `# HELP rotplan_certificate_not_after_timestamp_seconds When the certificate expires (its notAfter), in seconds since the Unix epoch.
# TYPE rotplan_certificate_not_after_timestamp_seconds gauge
`
	headDue = `# HELP rotplan_certificate_rotation_due 1 if a run of the plan now would replace the certificate (it is due for renewal, or the plan replaces it on every run), 0 if not.
# TYPE rotplan_certificate_rotation_due gauge
`
	headRenewBefore = `# HELP rotplan_certificate_renew_before_seconds How long before its expiry the plan renews the certificate (renew_before), in seconds.
# TYPE rotplan_certificate_renew_before_seconds gauge
`
)

func TestPlanMetricsExposition(t *testing.T) {
	pv := metricsPreview(t)
	withErrors := &engine.Preview{Steps: pv.Steps[2:3]}
	failed := hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Would fail"}}
	warned := hcl.Diagnostics{{Severity: hcl.DiagWarning, Summary: "Careful"}}
	const p = `plan="/etc/rotplan/prod.hcl"`
	for _, c := range []struct {
		name  string
		pv    *engine.Preview
		diags hcl.Diagnostics
		want  string
	}{
		{
			name: "certificates", pv: pv, diags: warned,
			// Sorted by path; admin.crt and server.crt once each, with
			// the first step that names them; the due server certificate
			// expires at 2026-01-05T12:00:00Z = 1767614400.
			want: headCheck + `rotplan_plan_last_check_timestamp_seconds{` + p + `} 1767323045.678
` + headSuccess + `rotplan_plan_check_success{` + p + `} 1
` + headReadable + `rotplan_certificate_readable{` + p + `,step="issue.admin",path="/srv/admin/admin.crt"} 1
rotplan_certificate_readable{` + p + `,step="write.denied",path="/srv/denied.crt",error="permission_denied"} 0
rotplan_certificate_readable{` + p + `,step="issue.gone",path="/srv/gone.crt",error="missing"} 0
rotplan_certificate_readable{` + p + `,step="write.ca",path="/srv/tls/ca \"x\"\\\n.pem"} 1
rotplan_certificate_readable{` + p + `,step="issue.server",path="/srv/tls/server.crt"} 1
` + headNotAfter + `rotplan_certificate_not_after_timestamp_seconds{` + p + `,step="issue.admin",path="/srv/admin/admin.crt",subject="CN=vault-admin-prod",serial="1a:2b"} 1768867200
rotplan_certificate_not_after_timestamp_seconds{` + p + `,step="write.ca",path="/srv/tls/ca \"x\"\\\n.pem",subject="CN=CA \\\"2026\\\"",serial="07"} 1893456000
rotplan_certificate_not_after_timestamp_seconds{` + p + `,step="issue.server",path="/srv/tls/server.crt",subject="CN=vault.prod.privsec.ch",serial="01:02"} 1767614400
` + headDue + `rotplan_certificate_rotation_due{` + p + `,step="issue.admin",path="/srv/admin/admin.crt"} 0
rotplan_certificate_rotation_due{` + p + `,step="write.denied",path="/srv/denied.crt"} 0
rotplan_certificate_rotation_due{` + p + `,step="issue.gone",path="/srv/gone.crt"} 1
rotplan_certificate_rotation_due{` + p + `,step="write.ca",path="/srv/tls/ca \"x\"\\\n.pem"} 0
rotplan_certificate_rotation_due{` + p + `,step="issue.server",path="/srv/tls/server.crt"} 1
` + headRenewBefore + `rotplan_certificate_renew_before_seconds{` + p + `,step="issue.admin",path="/srv/admin/admin.crt"} 864000
rotplan_certificate_renew_before_seconds{` + p + `,step="issue.gone",path="/srv/gone.crt"} 3600
rotplan_certificate_renew_before_seconds{` + p + `,step="issue.server",path="/srv/tls/server.crt"} 864000
`,
		},
		{
			// What could be read is exported all the same.
			name: "preview with errors", pv: withErrors, diags: failed,
			want: headCheck + `rotplan_plan_last_check_timestamp_seconds{` + p + `} 1767323045.678
` + headSuccess + `rotplan_plan_check_success{` + p + `} 0
` + headReadable + `rotplan_certificate_readable{` + p + `,step="issue.server",path="/srv/tls/server.crt"} 1
` + headNotAfter + `rotplan_certificate_not_after_timestamp_seconds{` + p + `,step="issue.server",path="/srv/tls/server.crt",subject="CN=vault.prod.privsec.ch",serial="01:02"} 1767614400
` + headDue + `rotplan_certificate_rotation_due{` + p + `,step="issue.server",path="/srv/tls/server.crt"} 1
` + headRenewBefore + `rotplan_certificate_renew_before_seconds{` + p + `,step="issue.server",path="/srv/tls/server.crt"} 864000
`,
		},
		{
			name: "plan not previewed", pv: nil, diags: failed,
			want: headCheck + `rotplan_plan_last_check_timestamp_seconds{` + p + `} 1767323045.678
` + headSuccess + `rotplan_plan_check_success{` + p + `} 0
`,
		},
		{
			// A preview without errors whose diagnostics were lost
			// must not read as a success either: pv nil is a failure.
			name: "nothing previewed, no diagnostics", pv: nil,
			want: headCheck + `rotplan_plan_last_check_timestamp_seconds{` + p + `} 1767323045.678
` + headSuccess + `rotplan_plan_check_success{` + p + `} 0
`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := string(exposition(planGauges("/etc/rotplan/prod.hcl", c.pv, c.diags, checkTime)))
			if got != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

func TestEscapeLabelValue(t *testing.T) {
	for _, c := range []struct {
		name, in, want string
	}{
		{"plain", "/home/vaultprod/tls-prod/server.crt", "/home/vaultprod/tls-prod/server.crt"},
		{"double quote", `CN=a "b"`, `CN=a \"b\"`},
		{"backslash", `C:\tls`, `C:\\tls`},
		{"line feed", "a\nb", `a\nb`},
		{"escaped quote in a subject", `CN=a \"b\"`, `CN=a \\\"b\\\"`},
		{"tab and UTF-8 stay", "é\tü", "é\tü"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := escapeLabelValue(c.in); got != c.want {
				t.Errorf("escapeLabelValue(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

// TestHelpIsEscaped: HELP text escapes a backslash and a line feed, and
// leaves a double quote alone, as the format says.
func TestHelpIsEscaped(t *testing.T) {
	got := string(exposition([]gauge{{name: "g", help: "a \\ b\nc \"d\"", samples: []sample{{value: 0.5}}}}))
	want := "# HELP g a \\\\ b\\nc \"d\"\n# TYPE g gauge\ng 0.5\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestWatchedCertificatesByAbsolutePath: a file named by several steps,
// relatively and absolutely, is one certificate, with the first step's
// name, due when any of them would replace it, and read when any could.
func TestWatchedCertificatesByAbsolutePath(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	c := testCertificate(t, "x", 1, checkTime)
	abs := filepath.Join(dir, "tls", "server.crt")
	pv := &engine.Preview{Steps: []engine.StepPreview{
		{Addr: "issue.a", Action: steps.NoChange, Skipped: true,
			Certificates: []steps.CertificateFile{{Path: "tls/server.crt", Err: errors.New("busy")}}},
		{Addr: "write.b", Action: steps.Replace,
			Certificates: []steps.CertificateFile{{Path: abs, Certificate: c, RenewBefore: time.Hour}}},
		{Addr: "write.c", Action: steps.NoChange,
			Certificates: []steps.CertificateFile{{Path: "./tls/../tls/server.crt", Certificate: c}}},
	}}
	got := watchedCertificates(pv)
	if len(got) != 1 {
		t.Fatalf("got %d certificates, want 1: %#v", len(got), got)
	}
	w := got[0]
	if w.step != "issue.a" || w.path != abs || !w.due || w.file.Certificate != c || w.file.Err != nil || w.file.RenewBefore != time.Hour {
		t.Errorf("got step %q path %q due %v certificate %v error %v renew_before %s; want issue.a, %s, due, read, 1h",
			w.step, w.path, w.due, w.file.Certificate != nil, w.file.Err, w.file.RenewBefore, abs)
	}
}

// TestWatchedCertificatesOnHosts: a file on a host is watched by host and
// path: the same path on two hosts, or here, is three certificates, each
// on a host labelled with it, and a path on a host is never made absolute
// against this directory.
func TestWatchedCertificatesOnHosts(t *testing.T) {
	c := testCertificate(t, "x", 1, checkTime)
	pv := &engine.Preview{Steps: []engine.StepPreview{
		{Addr: `write.a["web1"]`, Action: steps.NoChange,
			Certificates: []steps.CertificateFile{{Host: `host.web["web1"]`, Path: "/etc/tls/server.crt", Certificate: c}}},
		{Addr: `write.a["web2"]`, Action: steps.Replace,
			Certificates: []steps.CertificateFile{{Host: `host.web["web2"]`, Path: "/etc/tls/server.crt", Err: fs.ErrNotExist}}},
		{Addr: "write.here", Action: steps.NoChange,
			Certificates: []steps.CertificateFile{{Path: "/etc/tls/server.crt", Certificate: c}}},
	}}
	got := watchedCertificates(pv)
	if len(got) != 3 || got[0].host != "" || got[1].host != `host.web["web1"]` || got[2].host != `host.web["web2"]` || got[2].due != true {
		t.Fatalf("got %#v; want here, web1, web2 (due)", got)
	}
	text := string(exposition(planGauges("/p.hcl", pv, nil, checkTime)))
	for _, want := range []string{
		`rotplan_certificate_readable{plan="/p.hcl",step="write.a[\"web2\"]",path="/etc/tls/server.crt",host="host.web[\"web2\"]",error="missing"} 0`,
		`rotplan_certificate_readable{plan="/p.hcl",step="write.here",path="/etc/tls/server.crt"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the exposition lacks %s:\n%s", want, text)
		}
	}
}

func TestReadError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&fs.PathError{Op: "open", Path: "x", Err: syscall.ENOENT}, readMissing},
		{&fs.PathError{Op: "open", Path: "x", Err: syscall.EACCES}, readPermissionDenied},
		{fmt.Errorf("reading: %w", steps.ErrNoCertificate), readNoCertificate},
		{&fs.PathError{Op: "read", Path: "x", Err: syscall.EIO}, readFailed},
	} {
		if got := readError(c.err); got != c.want {
			t.Errorf("readError(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// dirEntries lists a directory's names, to see that nothing but the
// target is left in it.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestPlanMetricsFile runs plan -metrics-file on a plan whose writes
// replace a certificate and a key, as an operator would: the file names
// the certificate alone, holds no key, and plan's exit codes are what they
// are without it. A metrics file that cannot be written is an error.
func TestPlanMetricsFile(t *testing.T) {
	dir := t.TempDir()
	notAfter := time.Date(2031, 2, 3, 4, 5, 6, 0, time.UTC)
	crt := testCertificate(t, "app.example", 0x42, notAfter)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"app.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: crt.Raw}),
		"app.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	plan := func(t *testing.T, mode string) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "p.hcl")
		src := fmt.Sprintf("write \"crt\" {\n  path    = %q\n  content = \"new\"\n  mode    = %q\n}\n"+
			"write \"key\" {\n  path    = %q\n  content = \"new\"\n  mode    = \"0600\"\n}\n",
			filepath.Join(dir, "app.crt"), mode, filepath.Join(dir, "app.key"))
		if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good, bad := plan(t, "0644"), plan(t, "0999")
	crtSeries := fmt.Sprintf(`rotplan_certificate_not_after_timestamp_seconds{plan=%q,step="write.crt",path=%q,subject="CN=app.example",serial="42"} %d`,
		good, filepath.Join(dir, "app.crt"), notAfter.Unix())
	for _, c := range []struct {
		name    string
		args    []string
		metrics string // -metrics-file, relative to a directory of the test's
		exit    int
		// want are lines the file must hold; stderr a text stderr must.
		want   []string
		stderr string
	}{
		{name: "certificate exported", args: []string{good}, metrics: "rotplan.prom", exit: exitOK,
			want: []string{crtSeries, fmt.Sprintf("rotplan_plan_check_success{plan=%q} 1", good)}},
		{name: "exit code with changes pending", args: []string{"-detailed-exitcode", good}, metrics: "rotplan.prom", exit: exitPlanChanges,
			want: []string{crtSeries}},
		{name: "preview with errors", args: []string{bad}, metrics: "rotplan.prom", exit: exitPlanError,
			want: []string{fmt.Sprintf("rotplan_plan_check_success{plan=%q} 0", bad), "rotplan_certificate_readable{"}},
		{name: "plan that does not load", args: []string{filepath.Join(dir, "none.hcl")}, metrics: "rotplan.prom", exit: exitPlanError,
			want: []string{fmt.Sprintf("rotplan_plan_check_success{plan=%q} 0", filepath.Join(dir, "none.hcl"))}},
		{name: "not *.prom", args: []string{good}, metrics: "rotplan.txt", exit: exitOK,
			want: []string{crtSeries}, stderr: "only reads files named *.prom"},
		{name: "cannot be written", args: []string{good}, metrics: "missing/rotplan.prom", exit: exitPlanError,
			stderr: "rotplan plan: -metrics-file: open "},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), c.metrics)
			var stdout, stderr bytes.Buffer
			code := rotplan(context.Background(), append([]string{"plan", "-log-level", "off", "-metrics-file", out}, c.args...), &stdout, &stderr)
			if code != c.exit {
				t.Errorf("exit %d, want %d\n%s", code, c.exit, stderr.String())
			}
			if !strings.Contains(stderr.String(), c.stderr) {
				t.Errorf("stderr lacks %q:\n%s", c.stderr, stderr.String())
			}
			b, err := os.ReadFile(out)
			if len(c.want) == 0 {
				if err == nil {
					t.Errorf("a metrics file was written:\n%s", b)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(b), "\n")
			for _, w := range c.want {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, w) }) {
					t.Errorf("the metrics file has no line %s:\n%s", w, b)
				}
			}
			if strings.Contains(string(b), "PRIVATE KEY") || strings.Contains(string(b), "app.key") {
				t.Errorf("the metrics file names the key:\n%s", b)
			}
		})
	}
}

func TestStatusMetricsExposition(t *testing.T) {
	const p = `plan="/etc/rotplan/prod.hcl"`
	started := time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC) // 1767322800
	ok := &engine.Run{Status: journal.StatusSucceeded, Started: started.Add(-24 * time.Hour), Finished: started.Add(-24*time.Hour + time.Minute)}
	head := `# HELP rotplan_status_last_check_timestamp_seconds When rotplan status last read the plan's journal and wrote this file, in seconds since the Unix epoch.
# TYPE rotplan_status_last_check_timestamp_seconds gauge
rotplan_status_last_check_timestamp_seconds{` + p + `} 1767323045.678
# HELP rotplan_status_check_success 1 if the journal could be read, 0 if not (rotplan status says why); the run metrics are left out then.
# TYPE rotplan_status_check_success gauge
`
	lastSuccess := `# HELP rotplan_last_success_timestamp_seconds When the last run of the plan that succeeded ended, in seconds since the Unix epoch; 0 when none did.
# TYPE rotplan_last_success_timestamp_seconds gauge
`
	start := `# HELP rotplan_last_run_start_timestamp_seconds When the last run of the plan started, in seconds since the Unix epoch.
# TYPE rotplan_last_run_start_timestamp_seconds gauge
rotplan_last_run_start_timestamp_seconds{` + p + `} 1767322800
`
	end := `# HELP rotplan_last_run_end_timestamp_seconds When the last run of the plan ended, in seconds since the Unix epoch; absent while it has not (it runs, or stopped without an end).
# TYPE rotplan_last_run_end_timestamp_seconds gauge
`
	status := `# HELP rotplan_last_run_status 1 for how the last run of the plan ended, 0 for the other states: succeeded, failed, interrupted, rolled_back, rollback_incomplete, hosts_failed, unfinished.
# TYPE rotplan_last_run_status gauge
`
	// states writes the status family with one state set.
	states := func(current string, extra ...string) string {
		var b strings.Builder
		for _, s := range append([]string{"succeeded", "failed", "interrupted", "rolled_back", "rollback_incomplete", "hosts_failed", "unfinished"}, extra...) {
			v := 0
			if s == current {
				v = 1
			}
			fmt.Fprintf(&b, "rotplan_last_run_status{%s,status=%q} %d\n", p, s, v)
		}
		return b.String()
	}
	for _, c := range []struct {
		name            string
		last, succeeded *engine.Run
		err             error
		want            string
	}{
		{name: "no run", want: head + "rotplan_status_check_success{" + p + "} 1\n" + lastSuccess + "rotplan_last_success_timestamp_seconds{" + p + "} 0\n"},
		{name: "journal unreadable", err: errors.New("journal damaged"), last: ok, succeeded: ok,
			want: head + "rotplan_status_check_success{" + p + "} 0\n"},
		{name: "failed after a success",
			last:      &engine.Run{Status: journal.StatusRolledBack, Started: started, Finished: started.Add(90 * time.Second)},
			succeeded: ok,
			want: head + "rotplan_status_check_success{" + p + "} 1\n" + lastSuccess + "rotplan_last_success_timestamp_seconds{" + p + "} 1767236460\n" +
				start + end + "rotplan_last_run_end_timestamp_seconds{" + p + "} 1767322890\n" + status + states("rolled_back")},
		{name: "unfinished, never succeeded", last: &engine.Run{Started: started},
			want: head + "rotplan_status_check_success{" + p + "} 1\n" + lastSuccess + "rotplan_last_success_timestamp_seconds{" + p + "} 0\n" +
				start + status + states("unfinished")},
		{name: "a status of a later rotplan", last: &engine.Run{Status: "paused", Started: started, Finished: started}, succeeded: ok,
			want: head + "rotplan_status_check_success{" + p + "} 1\n" + lastSuccess + "rotplan_last_success_timestamp_seconds{" + p + "} 1767236460\n" +
				start + end + "rotplan_last_run_end_timestamp_seconds{" + p + "} 1767322800\n" + status + states("paused", "paused")},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := string(exposition(statusGauges("/etc/rotplan/prod.hcl", c.last, c.succeeded, c.err, checkTime)))
			if got != c.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// TestStatusMetricsFile: status -metrics-file after a run that succeeded
// and one that failed says that the last one failed and when the one
// before ended, as the journals tell it.
func TestStatusMetricsFile(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "p.hcl")
	src := "variable \"command\" {\n  type = string\n}\nreload \"x\" {\n  command = [var.command]\n}\n"
	if err := os.WriteFile(plan, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, command := range []string{"/bin/true", "/bin/false"} {
		rotplan(context.Background(), []string{"run", "-log-level", "off", "-var", "command=" + command, plan}, &out, &out)
	}
	state := filepath.Join(dir, ".rotplan")
	first, err := engine.LastSucceeded(state)
	if err != nil || first == nil {
		t.Fatalf("no run succeeded (%v):\n%s", err, out.String())
	}
	last, err := engine.LoadRun(state)
	if err != nil || last == nil || last.Status == journal.StatusSucceeded {
		t.Fatalf("the last run succeeded or cannot be read (%v):\n%s", err, out.String())
	}
	metrics := filepath.Join(t.TempDir(), "rotplan-status.prom")
	var stdout, stderr bytes.Buffer
	code := rotplan(context.Background(), []string{"status", "-metrics-file", metrics, plan}, &stdout, &stderr)
	if want := statusExitCode(last); code != want {
		t.Errorf("exit %d, want the last run's %d\n%s", code, want, stderr.String())
	}
	b, err := os.ReadFile(metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("rotplan_status_check_success{plan=%q} 1", plan),
		fmt.Sprintf("rotplan_last_success_timestamp_seconds{plan=%q} %d", plan, first.Finished.Unix()),
		fmt.Sprintf("rotplan_last_run_start_timestamp_seconds{plan=%q} %d", plan, last.Started.Unix()),
		fmt.Sprintf("rotplan_last_run_status{plan=%q,status=%q} 1", plan, last.Status),
		fmt.Sprintf("rotplan_last_run_status{plan=%q,status=\"succeeded\"} 0", plan),
	} {
		if !slices.Contains(strings.Split(string(b), "\n"), want) {
			t.Errorf("the metrics file has no line %s:\n%s", want, b)
		}
	}

	// A file that cannot be written turns a 0 into a 1, and the status is
	// shown all the same.
	stdout.Reset()
	stderr.Reset()
	rotplan(context.Background(), []string{"run", "-log-level", "off", "-var", "command=/bin/true", plan}, &out, &out)
	code = rotplan(context.Background(), []string{"status", "-metrics-file", filepath.Join(dir, "missing", "x.prom"), plan}, &stdout, &stderr)
	if code != exitFailed || !strings.Contains(stderr.String(), "-metrics-file") || !strings.Contains(stdout.String(), "succeeded") {
		t.Errorf("exit %d, want %d, an error and the status\nstdout:\n%s\nstderr:\n%s", code, exitFailed, stdout.String(), stderr.String())
	}
}
