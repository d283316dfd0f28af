package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/engine/journal"
)

// TestExpositionParses reads rotplan's metrics files with the parser
// node_exporter's textfile collector uses (prometheus/common's expfmt,
// here only, as a test dependency), with the legacy metric and label
// names older collectors insist on: every family is a gauge with its
// HELP, and each label value reads back as it was before escaping.
func TestExpositionParses(t *testing.T) {
	old := model.NameValidationScheme
	model.NameValidationScheme = model.LegacyValidation
	t.Cleanup(func() { model.NameValidationScheme = old })

	pv := metricsPreview(t)
	ok := &engine.Run{Status: journal.StatusSucceeded, Started: checkTime.Add(-time.Hour), Finished: checkTime.Add(-time.Minute)}
	for _, c := range []struct {
		name   string
		gauges []gauge
	}{
		{"plan", planGauges("/etc/rotplan/prod.hcl", pv, hcl.Diagnostics{}, checkTime)},
		{"plan not previewed", planGauges("/etc/rotplan/prod.hcl", nil, nil, checkTime)},
		{"status", statusGauges("/etc/rotplan/prod.hcl", ok, ok, nil, checkTime)},
	} {
		t.Run(c.name, func(t *testing.T) {
			var parser expfmt.TextParser
			families, err := parser.TextToMetricFamilies(bytes.NewReader(exposition(c.gauges)))
			if err != nil {
				t.Fatalf("the parser rejects the file: %v\n%s", err, exposition(c.gauges))
			}
			for _, g := range c.gauges {
				f, ok := families[g.name]
				if len(g.samples) == 0 {
					if ok {
						t.Errorf("%s: a family without samples was written", g.name)
					}
					continue
				}
				if !ok {
					t.Errorf("%s: not parsed", g.name)
					continue
				}
				if f.GetType().String() != "GAUGE" || f.GetHelp() != g.help || len(f.GetMetric()) != len(g.samples) {
					t.Errorf("%s: type %s, help %q, %d samples; want a gauge, %q, %d samples",
						g.name, f.GetType(), f.GetHelp(), len(f.GetMetric()), g.help, len(g.samples))
					continue
				}
				for i, m := range f.GetMetric() {
					want := g.samples[i]
					if m.GetGauge().GetValue() != want.value || len(m.GetLabel()) != len(want.labels) {
						t.Errorf("%s sample %d: value %v, %d labels; want %v, %d", g.name, i, m.GetGauge().GetValue(), len(m.GetLabel()), want.value, len(want.labels))
						continue
					}
					// The parser sorts labels by name.
					got := map[string]string{}
					for _, l := range m.GetLabel() {
						got[l.GetName()] = l.GetValue()
					}
					for _, l := range want.labels {
						if got[l.name] != l.value {
							t.Errorf("%s sample %d: %s = %q, want %q", g.name, i, l.name, got[l.name], l.value)
						}
					}
				}
			}
		})
	}
}
