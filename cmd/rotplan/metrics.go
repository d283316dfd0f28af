package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/internal/atomicfile"
	"github.com/rotplan/rotplan/steps"
)

// metricsFileUsage is the help of plan's -metrics-file.
const metricsFileUsage = "after the preview, write the expiry of every certificate the plan looks after to `FILE`, " +
	"in Prometheus text format, atomically, for node_exporter's textfile collector (name it *.prom); see docs/cli.md"

// gauge is one metric family of a metrics file. Every metric rotplan
// exports is a gauge: each is a value as of the check that wrote the file.
type gauge struct {
	name, help string
	samples    []sample
}

// sample is one time series of a gauge.
type sample struct {
	labels []label
	value  float64
}

// label is a label of a sample; labels keep the order they are given in.
type label struct{ name, value string }

// The values a certificate's error label takes: a few fixed words, so that
// an alert can match them and a label never holds a message (which would
// make a new series for every wording, and might hold anything).
const (
	readMissing          = "missing"
	readPermissionDenied = "permission_denied"
	readNoCertificate    = "no_certificate"
	readFailed           = "unreadable"
)

// watchedCertificate is a certificate file the plan looks after, once per
// file, however many steps name it.
type watchedCertificate struct {
	// step is the first step, in the order of the run, that names the
	// file; host is the host it is on ("" where rotplan runs); path is
	// the file's absolute path.
	step, host, path string
	file             steps.CertificateFile
	// due is whether a run now would replace the file: some step that
	// names it would change something.
	due bool
}

// watchedCertificates gathers the certificate files of a preview's steps,
// by host and absolute path, sorted by them. The first step to name a file gives its
// step label; a later one adds what the first did not say (that it is due,
// its renew_before, the certificate where the first could not read one).
func watchedCertificates(pv *engine.Preview) []watchedCertificate {
	if pv == nil {
		return nil
	}
	byPath := map[string]*watchedCertificate{}
	var paths []string
	for _, s := range pv.Steps {
		due := !s.Skipped && s.Action.Changes()
		for _, f := range s.Certificates {
			path := f.Path
			if f.Host == "" {
				path = absPath(path)
			}
			key := f.Host + "\x00" + path
			w, ok := byPath[key]
			if !ok {
				byPath[key] = &watchedCertificate{step: s.Addr, host: f.Host, path: path, file: f, due: due}
				paths = append(paths, key)
				continue
			}
			w.due = w.due || due
			if w.file.RenewBefore == 0 {
				w.file.RenewBefore = f.RenewBefore
			}
			if w.file.Certificate == nil && f.Certificate != nil {
				w.file.Certificate, w.file.Err = f.Certificate, nil
			}
		}
	}
	sort.Strings(paths)
	out := make([]watchedCertificate, len(paths))
	for i, p := range paths {
		out[i] = *byPath[p]
	}
	return out
}

// absPath is path made absolute against the working directory, which is
// what a relative path in a plan is read against; a metric that says
// "server.crt" would not say which one.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// readError names why a certificate file could not be read, for the error
// label.
func readError(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return readMissing
	case errors.Is(err, fs.ErrPermission):
		return readPermissionDenied
	case errors.Is(err, steps.ErrNoCertificate):
		return readNoCertificate
	}
	return readFailed
}

// planGauges are the metrics of a check of plan (its absolute path) at
// now: pv is the preview, nil when the plan could not be previewed at all,
// and diags every problem found. Certificates that could be read are
// exported although the preview found errors; the success gauge says that
// it did.
func planGauges(plan string, pv *engine.Preview, diags hcl.Diagnostics, now time.Time) []gauge {
	planLabel := label{"plan", plan}
	success := 1.0
	if pv == nil || diags.HasErrors() {
		success = 0
	}
	gauges := []gauge{
		{
			name:    "rotplan_plan_last_check_timestamp_seconds",
			help:    "When rotplan plan last checked the plan and wrote this file, in seconds since the Unix epoch.",
			samples: []sample{{labels: []label{planLabel}, value: unixSeconds(now)}},
		},
		{
			name:    "rotplan_plan_check_success",
			help:    "1 if the check found no error, 0 if a run of the plan would fail now (rotplan plan says why); the certificates that could be read are exported either way.",
			samples: []sample{{labels: []label{planLabel}, value: success}},
		},
	}
	readable := gauge{
		name: "rotplan_certificate_readable",
		help: "1 if the certificate file could be read, 0 if not; the error label then says why: " +
			strings.Join([]string{readMissing, readPermissionDenied, readNoCertificate, readFailed}, ", ") + ".",
	}
	notAfter := gauge{
		name: "rotplan_certificate_not_after_timestamp_seconds",
		help: "When the certificate expires (its notAfter), in seconds since the Unix epoch.",
	}
	due := gauge{
		name: "rotplan_certificate_rotation_due",
		help: "1 if a run of the plan now would replace the certificate (it is due for renewal, or the plan replaces it on every run), 0 if not.",
	}
	renewBefore := gauge{
		name: "rotplan_certificate_renew_before_seconds",
		help: "How long before its expiry the plan renews the certificate (renew_before), in seconds.",
	}
	for _, w := range watchedCertificates(pv) {
		labels := []label{planLabel, {"step", w.step}, {"path", w.path}}
		if w.host != "" {
			labels = append(labels, label{"host", w.host})
		}
		if c := w.file.Certificate; c != nil {
			readable.samples = append(readable.samples, sample{labels: labels, value: 1})
			notAfter.samples = append(notAfter.samples, sample{
				labels: append(labels[:len(labels):len(labels)], label{"subject", c.Subject.String()}, label{"serial", steps.SerialHex(c)}),
				value:  float64(c.NotAfter.Unix()),
			})
		} else {
			readable.samples = append(readable.samples, sample{labels: append(labels[:len(labels):len(labels)], label{"error", readError(w.file.Err)}), value: 0})
		}
		due.samples = append(due.samples, sample{labels: labels, value: boolValue(w.due)})
		if w.file.RenewBefore > 0 {
			renewBefore.samples = append(renewBefore.samples, sample{labels: labels, value: w.file.RenewBefore.Seconds()})
		}
	}
	return append(gauges, readable, notAfter, due, renewBefore)
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// unixSeconds is a time in seconds since the Unix epoch, to the
// millisecond.
func unixSeconds(t time.Time) float64 { return float64(t.UnixMilli()) / 1e3 }

// exposition writes gauges in the Prometheus text exposition format
// (version 0.0.4): per family a HELP and a TYPE line and then its samples,
// every family's lines together, as the format requires. A family without
// samples is left out.
func exposition(gauges []gauge) []byte {
	var b bytes.Buffer
	for _, g := range gauges {
		if len(g.samples) == 0 {
			continue
		}
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s gauge\n", g.name, helpEscaper.Replace(g.help), g.name)
		for _, s := range g.samples {
			b.WriteString(g.name)
			for i, l := range s.labels {
				sep := ","
				if i == 0 {
					sep = "{"
				}
				fmt.Fprintf(&b, `%s%s="%s"`, sep, l.name, escapeLabelValue(l.value))
			}
			if len(s.labels) > 0 {
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(strconv.FormatFloat(s.value, 'f', -1, 64))
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// helpEscaper and labelEscaper escape as the text format asks: a backslash
// and a line feed in HELP text, and a double quote too in a label value.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// escapeLabelValue escapes a label value. The format wants UTF-8, which a
// file name need not be: invalid bytes become U+FFFD.
func escapeLabelValue(s string) string {
	return labelEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD"))
}

// writeMetricsFile writes gauges to path for command (its name in
// messages); false when it could not, which it has said on stderr.
func writeMetricsFile(stderr io.Writer, command, path string, gauges []gauge) bool {
	if !strings.HasSuffix(path, ".prom") {
		fmt.Fprintf(stderr, "rotplan %s: warning: -metrics-file %s: node_exporter's textfile collector only reads files named *.prom\n", command, path)
	}
	if err := atomicfile.Write(path, exposition(gauges), 0o644); err != nil {
		fmt.Fprintf(stderr, "rotplan %s: -metrics-file: %v\n", command, err)
		return false
	}
	return true
}

// writePlanMetrics writes plan's -metrics-file, when it was given, from
// the preview (nil when the plan could not be previewed) and every problem
// found; false when the file could not be written.
func (c *command) writePlanMetrics(path string, pv *engine.Preview, diags hcl.Diagnostics) bool {
	if path == "" {
		return true
	}
	return writeMetricsFile(c.stderr, c.name, path, planGauges(absPath(c.plan), pv, diags, time.Now()))
}

// statusMetricsUsage is the help of status's -metrics-file.
const statusMetricsUsage = "write how the last run went and when a run last succeeded to `FILE`, " +
	"in Prometheus text format, atomically, for node_exporter's textfile collector (name it *.prom); see docs/cli.md"

// runStatuses are the states of rotplan_last_run_status, every one
// exported, 1 for the last run's and 0 for the others, so that a series
// does not vanish when the status changes. unfinished is a run that
// stopped without an end (a crash, a kill).
var runStatuses = []string{
	journal.StatusSucceeded, journal.StatusFailed, journal.StatusInterrupted,
	journal.StatusRolledBack, journal.StatusRollbackIncomplete, journal.StatusHostsFailed,
	"unfinished",
}

// statusGauges are the metrics of status's check of plan (its absolute
// path) at now: last is the state directory's last run (nil when there is
// none), succeeded its last run that succeeded (nil when none did), err why
// the journals could not be read.
func statusGauges(plan string, last, succeeded *engine.Run, err error, now time.Time) []gauge {
	planLabel := []label{{"plan", plan}}
	gauges := []gauge{
		{
			name:    "rotplan_status_last_check_timestamp_seconds",
			help:    "When rotplan status last read the plan's journal and wrote this file, in seconds since the Unix epoch.",
			samples: []sample{{labels: planLabel, value: unixSeconds(now)}},
		},
		{
			name:    "rotplan_status_check_success",
			help:    "1 if the journal could be read, 0 if not (rotplan status says why); the run metrics are left out then.",
			samples: []sample{{labels: planLabel, value: boolValue(err == nil)}},
		},
	}
	if err != nil {
		return gauges
	}
	lastSuccess := 0.0
	if succeeded != nil {
		lastSuccess = float64(succeeded.Finished.Unix())
	}
	gauges = append(gauges, gauge{
		name:    "rotplan_last_success_timestamp_seconds",
		help:    "When the last run of the plan that succeeded ended, in seconds since the Unix epoch; 0 when none did.",
		samples: []sample{{labels: planLabel, value: lastSuccess}},
	})
	if last == nil {
		return gauges
	}
	start := gauge{
		name:    "rotplan_last_run_start_timestamp_seconds",
		help:    "When the last run of the plan started, in seconds since the Unix epoch.",
		samples: []sample{{labels: planLabel, value: float64(last.Started.Unix())}},
	}
	end := gauge{
		name: "rotplan_last_run_end_timestamp_seconds",
		help: "When the last run of the plan ended, in seconds since the Unix epoch; absent while it has not (it runs, or stopped without an end).",
	}
	if !last.Finished.IsZero() {
		end.samples = []sample{{labels: planLabel, value: float64(last.Finished.Unix())}}
	}
	status := gauge{
		name: "rotplan_last_run_status",
		help: "1 for how the last run of the plan ended, 0 for the other states: " + strings.Join(runStatuses, ", ") + ".",
	}
	current := last.Status
	if current == "" {
		current = "unfinished"
	}
	states := runStatuses
	if !slices.Contains(states, current) { // a status of a later rotplan
		states = append(states[:len(states):len(states)], current)
	}
	for _, s := range states {
		status.samples = append(status.samples, sample{labels: append(planLabel[:1:1], label{"status", s}), value: boolValue(s == current)})
	}
	return append(gauges, start, end, status)
}

// writeStatusMetrics writes status's -metrics-file, when it was given, from
// the last run of the state directory (nil when there is none) or the error
// of reading it; false when the file could not be written.
func writeStatusMetrics(stderr io.Writer, path, plan, stateDir string, last *engine.Run, err error) bool {
	if path == "" {
		return true
	}
	var succeeded *engine.Run
	if err == nil {
		succeeded, err = engine.LastSucceeded(stateDir)
	}
	return writeMetricsFile(stderr, "status", path, statusGauges(absPath(plan), last, succeeded, err, time.Now()))
}
