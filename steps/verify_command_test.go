package steps

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/rotplan/rotplan/internal/command"
	"github.com/zclconf/go-cty/cty"
)

func TestVerifyCommand(t *testing.T) {
	tests := []struct {
		name     string
		argv     []string
		timeout  string
		wantPath string   // the argument the error points at; "" for a pass
		wantErr  []string // what the error must say
		notErr   []string // what it must not
	}{
		{name: "exit 0", argv: []string{"/bin/sh", "-c", "echo syntax is ok"}},
		{name: "exit 1 shows the output", argv: []string{"/bin/sh", "-c", "echo 'nginx: [emerg] cannot load certificate' >&2; exit 1"},
			wantPath: "command.argv", wantErr: []string{"exit status 1", "nginx: [emerg] cannot load certificate", "not retried"}},
		{name: "long output is bounded to its end", argv: []string{"/bin/sh", "-c", "x=FIRST; echo ${x}LINE; i=0; while [ $i -lt 2000 ]; do echo filler line $i; i=$((i+1)); done; echo 'test failed' >&2; exit 3"},
			wantPath: "command.argv", wantErr: []string{"exit status 3", "[…]", "test failed"}, notErr: []string{"FIRSTLINE"}},
		{name: "program missing", argv: []string{"/nonexistent/nginx", "-t"},
			wantPath: "command.argv", wantErr: []string{"cannot run /nonexistent/nginx", "no such file"}},
		{name: "program not on PATH", argv: []string{"rotplan-no-such-program", "-t"},
			wantPath: "command.argv", wantErr: []string{"cannot run rotplan-no-such-program", "not found"}},
		{name: "timeout", argv: []string{"/bin/sh", "-c", "echo started; exec sleep 60"}, timeout: "200ms",
			wantPath: "command.argv", wantErr: []string{"timed out after 200ms", "started"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step := map[string]cty.Value{}
			if tt.timeout != "" {
				step["timeout"] = cty.StringVal(tt.timeout)
			}
			cfg := checkConfig(t, step, "command", map[string]cty.Value{"argv": stringListVal(tt.argv...)})
			out, err := validateApply(t, cfg)
			if tt.wantPath == "" {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if got := out.GetAttr("check"); !got.RawEquals(cty.StringVal("command")) {
					t.Errorf("check = %#v", got)
				}
				return
			}
			msg := wantAttrErr(t, err, tt.wantPath)
			wantErrContains(t, err, tt.wantErr...)
			for _, s := range tt.notErr {
				if strings.Contains(msg, s) {
					t.Errorf("error holds %q: %v", s, err)
				}
			}
			if len(msg) > command.OutputLimit+1000 {
				t.Errorf("error of %d bytes: the output is not bounded", len(msg))
			}
		})
	}
}

func TestVerifyCommandArguments(t *testing.T) {
	tests := []struct {
		name     string
		argv     cty.Value
		wantPath string
		want     string
	}{
		{"empty argv", cty.ListValEmpty(cty.String), "command.argv", "must not be empty"},
		{"empty program", stringListVal("", "-t"), "command.argv", "program name"},
		{"sensitive argument", cty.ListVal([]cty.Value{cty.StringVal("nginx"), cty.StringVal("-p"), cty.StringVal("s3cret").Mark("sensitive")}), "command.argv", "must not use sensitive values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&Verify{}).Validate(checkConfig(t, nil, "command", map[string]cty.Value{"argv": tt.argv}))
			msg := wantAttrErr(t, err, tt.wantPath)
			if !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not say %q", msg, tt.want)
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("the error quotes a sensitive value: %q", msg)
			}
		})
	}
}

// TestVerifyCommandPlanRunsNothing: the preview looks for the program but
// does not run it; a missing program is a problem at argv.
func TestVerifyCommandPlanRunsNothing(t *testing.T) {
	marker := t.TempDir() + "/ran"
	v := &Verify{}
	env, _ := testEnv(t)
	pv, err := v.Plan(context.Background(), env, checkConfig(t, nil, "command", map[string]cty.Value{"argv": stringListVal("/bin/sh", "-c", "touch "+marker)}))
	if err != nil || len(pv.Problems) != 0 || pv.Action != Check {
		t.Fatalf("Plan: %+v, %v", pv, err)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the preview ran the command")
	}
	pv, err = v.Plan(context.Background(), env, checkConfig(t, nil, "command", map[string]cty.Value{"argv": stringListVal("/nonexistent/nginx", "-t")}))
	if err != nil || len(pv.Problems) != 1 {
		t.Fatalf("Plan: %+v, %v; want one problem", pv, err)
	}
	wantAttrErr(t, pv.Problems[0], "command.argv")
}
