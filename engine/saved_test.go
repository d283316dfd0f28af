package engine

import (
	"strings"
	"testing"
)

func TestReadSavedPlan(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		isSaved bool
		err     string
	}{
		{"a plan", "write \"f\" {\n}\n", false, ""},
		{"a JSON plan", `{"write": {"f": {"path": "x"}}}`, false, ""},
		{"damaged", `{"format": "rotplan-saved-plan", "format_version": "one"}`, true, "damaged"},
		{"newer format", `{"format": "rotplan-saved-plan", "format_version": 2}`, true, "format version 2"},
		{"empty", `{"format": "rotplan-saved-plan", "format_version": 1}`, true, "names no plan"},
		{"good", `{"format": "rotplan-saved-plan", "format_version": 1, "run": {"plan": "/p.hcl"}, "steps": [{"step": "write.f", "action": "create"}]}`, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, ok, err := ReadSavedPlan([]byte(tc.in))
			if ok != tc.isSaved {
				t.Fatalf("ok = %v, want %v", ok, tc.isSaved)
			}
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("err = %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("err = %v, want one saying %q", err, tc.err)
			case tc.err == "" && ok && (s == nil || s.Steps[0].Step != "write.f"):
				t.Errorf("decoded %#v", s)
			}
		})
	}
}
