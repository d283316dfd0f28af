package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/internal/testvault"
)

// series is one sample of a metrics file: its labels and value.
type series struct {
	labels map[string]string
	value  float64
}

var (
	sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)`)
)

// readMetrics reads a Prometheus text file as node_exporter's textfile
// collector would, by metric name. It knows the format as far as rotplan
// writes it: a line that is neither a comment nor a sample, or a family
// without HELP and TYPE before its samples, fails the test.
func readMetrics(t *testing.T, path string) map[string][]series {
	t.Helper()
	text := mustRead(t, path)
	if !strings.HasSuffix(text, "\n") {
		t.Fatalf("%s does not end with a line feed", path)
	}
	out := map[string][]series{}
	typed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, kind, _ := strings.Cut(f, " ")
			if kind != "gauge" {
				t.Errorf("%s: %s is a %q, want gauge", path, name, kind)
			}
			typed[name] = true
			continue
		}
		if strings.HasPrefix(line, "# HELP ") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s: not a sample: %q", path, line)
		}
		if !typed[m[1]] {
			t.Errorf("%s: %s has no TYPE line before its samples", path, m[1])
		}
		s := series{labels: map[string]string{}}
		rest := m[2]
		for rest != "" {
			lm := labelRE.FindStringSubmatchIndex(rest)
			if lm == nil || lm[0] != 0 {
				t.Fatalf("%s: malformed labels in %q", path, line)
			}
			value, err := strconv.Unquote(`"` + rest[lm[4]:lm[5]] + `"`)
			if err != nil {
				t.Fatalf("%s: label value in %q: %v", path, line, err)
			}
			s.labels[rest[lm[2]:lm[3]]] = value
			rest = rest[lm[1]:]
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("%s: value in %q: %v", path, line, err)
		}
		s.value = v
		out[m[1]] = append(out[m[1]], s)
	}
	return out
}

// byPath returns a metric's samples by their path label; two samples of
// one path fail the test.
func byPath(t *testing.T, metrics map[string][]series, name string) map[string]series {
	t.Helper()
	out := map[string]series{}
	for _, s := range metrics[name] {
		if _, dup := out[s.labels["path"]]; dup {
			t.Errorf("%s: two series of %s", name, s.labels["path"])
		}
		out[s.labels["path"]] = s
	}
	return out
}

// TestPlanMetrics runs `rotplan plan -metrics-file` on the reference plan
// as an operator's timer would: from the plan's directory, into a textfile
// directory given relatively. The file must name admin.crt and server.crt
// with the expiry, subject and serial of the files themselves (read here
// with crypto/x509) whether a run would rotate them or not (renew_before
// 720h: every certificate is due; 240h: none is, and every step is
// skipped), when the preview fails (Vault unreachable), and after a run
// that replaced them; and it must hold no key. After the run, status
// -metrics-file says that it succeeded, as its journal in the default state
// directory does.
func TestPlanMetrics(t *testing.T) {
	v := testvault.StartT(t)
	dir := operatorDir(t, v)
	if err := os.Mkdir(filepath.Join(dir, "textfile"), 0o755); err != nil {
		t.Fatal(err)
	}
	const metricsFile = "textfile/rotplan.prom"
	admin, server := filepath.Join(v.AdminDir, "admin.crt"), filepath.Join(v.ServerDir, "server.crt")
	watched := map[string]string{admin: "issue.admin", server: "issue.server"}
	keys := []string{filepath.Join(v.AdminDir, "admin.key"), filepath.Join(v.ServerDir, "server.key")}
	plan, err := filepath.EvalSymlinks(filepath.Join(dir, "prod.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]string{} // by file, as the last check saw them
	for _, c := range []struct {
		name string
		vars []string
		due  float64
		// run carries the rotation out before the check.
		run bool
		// unreachable points VAULT_ADDR where no Vault listens: the
		// preview fails, and the certificates are exported all the same.
		unreachable bool
	}{
		{name: "due", due: 1},
		{name: "not due", vars: notDue, due: 0},
		{name: "Vault unreachable", due: 1, unreachable: true},
		{name: "after a run", vars: notDue, due: 0, run: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.run {
				if res := runIn(t, dir, v.Environ(), "run", "-var-file", "prod.vars.hcl", "prod.hcl"); res.exit != 0 {
					t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
				}
			}
			args := append([]string{"plan", "-var-file", "prod.vars.hcl", "-metrics-file", metricsFile}, c.vars...)
			env, success, exit := v.Environ(), 1.0, 0
			if c.unreachable {
				env, success, exit = append(env, "VAULT_ADDR=https://"+closedPort(t)), 0, 1
			}
			res := runIn(t, dir, env, append(args, "prod.hcl")...)
			if res.exit != exit {
				t.Fatalf("plan: exit %d, want %d\n%s%s", res.exit, exit, res.stdout, res.stderr)
			}
			path := filepath.Join(dir, metricsFile)
			fi, err := os.Stat(path)
			if err != nil || fi.Mode() != 0o644 {
				t.Fatalf("%s: %v, mode %v; want -rw-r--r--", metricsFile, err, fi.Mode())
			}
			if names := dirNames(t, filepath.Join(dir, "textfile")); strings.Join(names, ",") != "rotplan.prom" {
				t.Errorf("the textfile directory holds %v, want rotplan.prom alone", names)
			}
			text := mustRead(t, path)
			assertNoSecretOutput(t, v, result{stdout: text})
			for _, key := range keys {
				if strings.Contains(text, key) {
					t.Errorf("the metrics name the key %s:\n%s", key, text)
				}
			}
			metrics := readMetrics(t, path)
			if s := metrics["rotplan_plan_check_success"]; len(s) != 1 || s[0].value != success || s[0].labels["plan"] != plan {
				t.Errorf("rotplan_plan_check_success = %#v, want %v with plan %q", s, success, plan)
			}
			if s := metrics["rotplan_plan_last_check_timestamp_seconds"]; len(s) != 1 || s[0].value <= 0 {
				t.Errorf("rotplan_plan_last_check_timestamp_seconds = %#v", s)
			}
			notAfter := byPath(t, metrics, "rotplan_certificate_not_after_timestamp_seconds")
			readable := byPath(t, metrics, "rotplan_certificate_readable")
			due := byPath(t, metrics, "rotplan_certificate_rotation_due")
			renew := byPath(t, metrics, "rotplan_certificate_renew_before_seconds")
			for file, step := range watched {
				crt := readCert(t, file)
				s, ok := notAfter[file]
				switch {
				case !ok:
					t.Errorf("no expiry of %s in:\n%s", file, text)
					continue
				case s.value != float64(crt.NotAfter.Unix()):
					t.Errorf("%s: not after %.0f, the file's is %d (%s)", file, s.value, crt.NotAfter.Unix(), crt.NotAfter)
				case s.labels["serial"] != colonHex(crt) || s.labels["subject"] != crt.Subject.String():
					t.Errorf("%s: serial %q subject %q, the file's are %q and %q", file, s.labels["serial"], s.labels["subject"], colonHex(crt), crt.Subject)
				case s.labels["step"] != step || s.labels["plan"] != plan:
					t.Errorf("%s: step %q plan %q, want %s and %s", file, s.labels["step"], s.labels["plan"], step, plan)
				case c.run && s.labels["serial"] == serials[file]:
					t.Errorf("%s: serial %s after the run, as before it", file, s.labels["serial"])
				}
				serials[file] = s.labels["serial"]
				if readable[file].value != 1 || due[file].value != c.due {
					t.Errorf("%s: readable %v, rotation_due %v; want 1 and %v", file, readable[file].value, due[file].value, c.due)
				}
				want := 720 * 3600.0
				if c.vars != nil {
					want = 240 * 3600
				}
				if renew[file].value != want {
					t.Errorf("%s: renew_before %v s, want %v", file, renew[file].value, want)
				}
			}
			// Every file of the plan that holds a certificate, once, and
			// none that holds a key.
			var files []string
			for file, s := range readable {
				files = append(files, file)
				if s.value != 1 {
					t.Errorf("%s cannot be read: %v", file, s.labels)
				}
			}
			sort.Strings(files)
			want := []string{
				filepath.Join(v.ServerDir, "ca_chain.pem"), filepath.Join(v.ServerDir, "fullchain.crt"), server,
				admin, filepath.Join(v.AdminDir, "issuing_ca.pem"),
			}
			sort.Strings(want)
			if !slices.Equal(files, want) {
				t.Errorf("the metrics name %q, want %q", files, want)
			}
		})
	}

	const runMetrics = "textfile/rotplan-run.prom"
	if res := runIn(t, dir, nil, "status", "-metrics-file", runMetrics, "prod.hcl"); res.exit != 0 {
		t.Fatalf("status: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	metrics := readMetrics(t, filepath.Join(dir, runMetrics))
	one := func(name string) series {
		t.Helper()
		if len(metrics[name]) != 1 || metrics[name][0].labels["plan"] != plan {
			t.Fatalf("%s: %#v, want one series of plan %s", name, metrics[name], plan)
		}
		return metrics[name][0]
	}
	end := one("rotplan_last_run_end_timestamp_seconds").value
	if got := one("rotplan_last_success_timestamp_seconds").value; got != end || got < one("rotplan_last_run_start_timestamp_seconds").value {
		t.Errorf("last success at %v, the run started at %v and ended at %v", got, one("rotplan_last_run_start_timestamp_seconds").value, end)
	}
	if n := len(metrics["rotplan_last_run_status"]); n != 7 {
		t.Errorf("rotplan_last_run_status has %d series, want one per status, 7", n)
	}
	for _, s := range metrics["rotplan_last_run_status"] {
		if want := boolFloat(s.labels["status"] == "succeeded"); s.value != want {
			t.Errorf("rotplan_last_run_status{status=%q} = %v, want %v", s.labels["status"], s.value, want)
		}
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// dirNames lists a directory's names, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names
}
