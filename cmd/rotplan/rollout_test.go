package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/engine"
	"github.com/rotplan/rotplan/plans"
)

// TestRolloutPreviewGolden renders the batches of testdata/rollout.hcl as
// plan and plan -json list them, and compares them to a golden file. The
// preview proper would reach the hosts over SSH: the listing needs only
// the compiled program.
func TestRolloutPreviewGolden(t *testing.T) {
	var v varSources
	l, diags := v.load(plans.NewParser(), "testdata/rollout.hcl")
	if diags.HasErrors() || l.Program == nil {
		t.Fatal(diags.Error())
	}
	pv := &engine.Preview{Rollouts: l.Program.Rollouts()}
	var text, doc bytes.Buffer
	writePreview(&text, "testdata/rollout.hcl", pv, colours(&text, true))
	writePreviewJSON(&doc, "testdata/rollout.hcl", true, pv, nil)
	got := "--- plan\n" + text.String() + "--- plan -json\n" + doc.String()
	checkGolden(t, "preview-rollout", got)
}

// TestRolloutGraph: rotplan graph draws a rollout's order as edges from
// every step of a batch to every step of the next.
func TestRolloutGraph(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := rotplan(context.Background(), []string{"graph", "testdata/rollout.hcl"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, edge := range []string{
		`"write.web[\"a\"]" -> "write.web[\"c\"]";`,
		`"write.web[\"b\"]" -> "write.web[\"c\"]";`,
		`"write.vault[1]" -> "write.vault[2]";`,
		`"write.vault[2]" -> "write.vault[0]";`,
	} {
		if !strings.Contains(stdout.String(), edge) {
			t.Errorf("no edge %s in\n%s", edge, stdout.String())
		}
	}
	if strings.Contains(stdout.String(), `"write.web[\"a\"]" -> "write.web[\"b\"]"`) {
		t.Errorf("an edge within a batch:\n%s", stdout.String())
	}
}
