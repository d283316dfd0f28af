package journal

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestAppendRecordAsJSONMarshal: the hand-written encoding reads back, with
// encoding/json, as json.Marshal's encoding of the same record does.
func TestAppendRecordAsJSONMarshal(t *testing.T) {
	at := time.Date(2026, 11, 25, 19, 50, 6, 808123456, time.UTC)
	for _, r := range []Record{
		{Type: StepStarted, Time: at, Step: `write.key["app1"]`, Inputs: "sha256:ab",
			Intent:   map[string]string{"path": "/etc/x/\"q\".key", "sha256": "cd", "mode": "0600"},
			Snapshot: map[string]string{"existed": "false", "path": "/etc/x"}},
		{Type: StepSucceeded, Time: at, Step: "issue.leaf", Outputs: json.RawMessage(`{"serial_number":"1a:2b","ca_chain":["a\nb"]}`),
			Facts: []Fact{{Name: "serial", Value: "1a:2b"}, {Name: "not after", Value: "<2026> & \x01"}}, Checked: true,
			Duration: Duration(1234567 * time.Nanosecond)},
		{Type: StepFailed, Time: at, Step: "reload.vault", Error: "signal: no such process\n\tat pid 12", Duration: Duration(3 * time.Hour)},
		{Type: StepFailed, Time: at, Step: `write.key["h3"]`, Error: "host lost", Unsettled: true},
		{Type: HostFailed, Time: at, Step: `reload.nginx["h3"]`, Host: `host.web["h3"]`, Rollout: "web", Error: "exit 1"},
		{Type: RollbackSucceeded, Time: at, Step: `write.key["h3"]`, Host: `host.web["h3"]`},
		{Type: StepSkipped, Time: at, Step: "issue.admin", Reason: "612h left ✓ \xff"},
		{Type: StepSuperseded, Time: at, Step: "issue.admin", Note: "revoked 1a"},
		{Type: RunFinished, Time: at, Status: StatusSucceeded},
		{Type: RunStarted, Time: at, Run: &RunInfo{Plan: "/p.hcl", Steps: []StepDefinition{{Step: "a", Definition: "d"}}}},
		{Type: StepRedo, Time: at},
	} {
		got, err := appendRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var g, w any
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%s: %v", got, err)
		}
		if err := json.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(g, w) {
			t.Errorf("record %s:\n got %s\nwant %s", r.Type, got, want)
		}
		var back Record
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		line, err := encode(r)
		if err != nil {
			t.Fatal(err)
		}
		if dec, err := decode(line[:len(line)-1]); err != nil || dec.Type != r.Type || !dec.Time.Equal(r.Time) {
			t.Errorf("encode/decode of %s: %+v, %v", r.Type, dec, err)
		}
	}
}

// TestFactsOnDisk: a step's facts are journaled byte for byte as before
// the journal had a Fact type of its own (steps.Fact, with the same JSON
// names), and read back from such a line.
func TestFactsOnDisk(t *testing.T) {
	r := Record{Type: StepSucceeded, Time: time.Date(2026, 11, 25, 19, 50, 6, 808123456, time.UTC), Step: "issue.leaf",
		Facts: []Fact{{Name: "serial", Value: "1a:2b"}, {Name: "not after", Value: "<2026> & \x01"}}}
	// The line a journal written before held for r.
	const old = `691437bc {"type":"step_succeeded","time":"2026-11-25T19:50:06.808123456Z","step":"issue.leaf",` +
		`"facts":[{"name":"serial","value":"1a:2b"},{"name":"not after","value":"<2026> & \u0001"}]}` + "\n"
	line, err := encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(line) != old {
		t.Errorf("encoded\n%s\nwant\n%s", line, old)
	}
	back, err := decode([]byte(old[:len(old)-1]))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Facts, r.Facts) {
		t.Errorf("read back %#v, want %#v", back.Facts, r.Facts)
	}
	marshalled, err := json.Marshal(Record{Facts: r.Facts})
	if err != nil {
		t.Fatal(err)
	}
	if want := `"facts":[{"name":"serial","value":"1a:2b"},{"name":"not after","value":"\u003c2026\u003e \u0026 \u0001"}]`; !strings.Contains(string(marshalled), want) {
		t.Errorf("json.Marshal wrote %s, want it to hold %s", marshalled, want)
	}
}
