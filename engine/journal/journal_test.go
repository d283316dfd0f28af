package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// everyRecord returns one record of each type, with every field its type
// uses set, as a run writes them.
func everyRecord() []Record {
	at := time.Date(2024, 5, 17, 10, 11, 12, 345000000, time.UTC)
	run := &RunInfo{
		Plan: "/etc/rotplan/prod.hcl", PlanHash: "ab12", VarsHash: "cd34", Version: "1.2.3", PID: 4242,
		Steps: []StepDefinition{{Step: "issue.web", Definition: "d1"}, {Step: "write.web", Definition: "d2"}},
	}
	forced := *run
	forced.Forced = true
	return []Record{
		{Type: RunStarted, Time: at, Run: run},
		{Type: StepStarted, Time: at.Add(time.Second), Step: "write.web", Inputs: "0123abcd",
			Intent: map[string]string{"path": "/etc/tls/web.pem", "sha256": "ffee"}},
		{Type: StepSucceeded, Time: at.Add(2 * time.Second), Step: "write.web",
			Outputs: json.RawMessage(`{"path":"/etc/tls/web.pem","size":1234}`),
			Facts:   []Fact{{Name: "sha256", Value: "ffee"}}, Duration: Duration(1500 * time.Millisecond), Checked: true},
		{Type: StepFailed, Time: at.Add(3 * time.Second), Step: "issue.web", Error: "vault said no\nover two lines",
			Duration: Duration(250 * time.Millisecond)},
		{Type: RunResumed, Time: at.Add(4 * time.Second), Run: &forced},
		{Type: StepRedo, Time: at.Add(5 * time.Second), Step: "issue.web", Reason: "it failed: vault said no"},
		{Type: StepSuperseded, Time: at.Add(6 * time.Second), Step: "issue.web", Note: "serial 1a:2b revoked",
			Outputs: json.RawMessage(`{"serial_number":"1a:2b"}`)},
		{Type: RunFinished, Time: at.Add(7 * time.Second), Status: StatusSucceeded},
	}
}

// appendAll creates a journal in a new state directory and appends recs.
func appendAll(t *testing.T, recs []Record) (dir, path string) {
	t.Helper()
	dir = t.TempDir()
	j, err := Create(dir)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	defer j.Close()
	for _, r := range recs {
		if err := j.Append(r); err != nil {
			t.Fatalf("Append(%s): %v", r.Type, err)
		}
	}
	return dir, j.Path()
}

// lineOffsets returns where each line of a journal file starts.
func lineOffsets(t *testing.T, b []byte) []int64 {
	t.Helper()
	var offs []int64
	for off := 0; off < len(b); {
		offs = append(offs, int64(off))
		i := bytes.IndexByte(b[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	return offs
}

func mustRead(t *testing.T, path string) *Contents {
	t.Helper()
	c, err := Read(path)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	return c
}

func TestRecordsRoundTrip(t *testing.T) {
	for _, want := range everyRecord() {
		t.Run(want.Type, func(t *testing.T) {
			_, path := appendAll(t, []Record{want})
			c := mustRead(t, path)
			if c.Torn != nil {
				t.Fatalf("Torn = %+v on a clean journal", c.Torn)
			}
			if len(c.Records) != 1 {
				t.Fatalf("read %d records, want 1", len(c.Records))
			}
			got := c.Records[0]
			if !got.Time.Equal(want.Time) {
				t.Errorf("Time = %v, want %v", got.Time, want.Time)
			}
			got.Time, want.Time = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("round trip changed the record:\n got %#v\nwant %#v", got, want)
			}
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if c.Size != fi.Size() {
				t.Errorf("Size = %d, want the file's %d", c.Size, fi.Size())
			}
		})
	}
}

func TestAppendSetsTheTime(t *testing.T) {
	before := time.Now()
	_, path := appendAll(t, []Record{{Type: RunFinished, Status: StatusFailed}})
	after := time.Now()
	got := mustRead(t, path).Records[0].Time
	if got.Before(before.Truncate(time.Microsecond)) || got.After(after) || got.Location() != time.UTC {
		t.Errorf("Time = %v, want a UTC time between %v and %v", got, before, after)
	}
}

func TestLineFormat(t *testing.T) {
	recs := everyRecord()
	_, path := appendAll(t, recs)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if last := lines[len(lines)-1]; last != "" {
		t.Fatalf("the file does not end with a newline: %q", last)
	}
	lines = lines[:len(lines)-1]
	if len(lines) != len(recs) {
		t.Fatalf("%d lines for %d records", len(lines), len(recs))
	}
	for i, line := range lines {
		sum, body, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		if !ok || len(sum) != 8 || strings.ToLower(sum) != sum {
			t.Errorf("line %d: %q does not start with 8 lowercase hex digits and a space", i+1, line)
			continue
		}
		if want := fmt.Sprintf("%08x", crcOf([]byte(body))); sum != want {
			t.Errorf("line %d: checksum %s, want CRC-32C %s", i+1, sum, want)
		}
		if !json.Valid([]byte(body)) {
			t.Errorf("line %d: not JSON: %s", i+1, body)
		}
	}
}

func TestConcurrentAppends(t *testing.T) {
	const writers = 50
	dir := t.TempDir()
	j, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- j.Append(Record{Type: StepStarted, Step: fmt.Sprintf("rec.s%02d", i)})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
	}

	c := mustRead(t, j.Path())
	if c.Torn != nil {
		t.Errorf("Torn = %+v", c.Torn)
	}
	seen := map[string]int{}
	for _, r := range c.Records {
		seen[r.Step]++
	}
	for i := range writers {
		if addr := fmt.Sprintf("rec.s%02d", i); seen[addr] != 1 {
			t.Errorf("%s appears %d times, want once", addr, seen[addr])
		}
	}
	if len(c.Records) != writers {
		t.Errorf("%d records, want %d", len(c.Records), writers)
	}
	// Every append is durable on return, so there was at least one fsync;
	// there is never more than one per append.
	if s := j.Stats().Syncs; s < 1 || s > writers {
		t.Errorf("Stats().Syncs = %d, want between 1 and %d", s, writers)
	}
}

// TestGroupCommit holds the journal as if an fsync were under way while 50
// appends arrive, so that all of them wait for the next one: that single
// fsync must make every one of them durable.
func TestGroupCommit(t *testing.T) {
	const writers = 50
	j, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()

	j.mu.Lock()
	j.syncing = true
	start := j.written
	j.mu.Unlock()

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	var lineLen int64
	for i := range writers {
		r := Record{Type: StepSucceeded, Step: fmt.Sprintf("rec.s%02d", i), Time: time.Unix(0, 0).UTC()}
		line, err := encode(r)
		if err != nil {
			t.Fatal(err)
		}
		lineLen += int64(len(line))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- j.Append(r)
		}()
	}
	// Wait until every append has written its line and waits for the
	// fsync; Append gives the lock up while it waits.
	for {
		j.mu.Lock()
		written := j.written
		j.mu.Unlock()
		if written == start+lineLen {
			break
		}
		runtime.Gosched()
	}
	j.mu.Lock()
	j.syncing = false
	j.cond.Broadcast()
	j.mu.Unlock()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if s := j.Stats().Syncs; s != 1 {
		t.Errorf("Stats().Syncs = %d for %d appends waiting together, want 1", s, writers)
	}
	if got := len(mustRead(t, j.Path()).Records); got != writers {
		t.Errorf("%d records, want %d", got, writers)
	}
}

func TestAppendAfterFailureIsRefused(t *testing.T) {
	j, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	j.Close() // the next write fails
	first := j.Append(Record{Type: RunFinished})
	if first == nil {
		t.Fatal("Append on a closed journal succeeded")
	}
	if second := j.Append(Record{Type: RunFinished}); !errors.Is(second, first) && second.Error() != first.Error() {
		t.Errorf("second Append = %v, want the sticky %v", second, first)
	}
}

func TestReadTornTail(t *testing.T) {
	recs := everyRecord()[:3]
	tests := []struct {
		name   string
		damage func(b []byte, last int64) []byte // last: where the last line starts
		reason string
	}{
		{"truncated mid-way", func(b []byte, last int64) []byte {
			return b[:last+(int64(len(b))-last)/2]
		}, "no end of line"},
		{"truncated after the checksum", func(b []byte, last int64) []byte {
			return b[:last+9]
		}, "no end of line"},
		{"without its newline", func(b []byte, _ int64) []byte {
			return b[:len(b)-1]
		}, "no end of line"},
		{"bad checksum", func(b []byte, last int64) []byte {
			b[last] = flipHex(b[last])
			return b
		}, "checksum mismatch"},
		{"changed JSON", func(b []byte, last int64) []byte {
			i := last + int64(bytes.Index(b[last:], []byte(`"step_succeeded"`))) + 1
			b[i] = 'S'
			return b
		}, "checksum mismatch"},
		{"a lone newline", func(b []byte, _ int64) []byte {
			return append(b, '\n')
		}, "no checksum"},
		{"garbage without newline", func(b []byte, _ int64) []byte {
			return append(b, "0000"...)
		}, "no end of line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, path := appendAll(t, recs)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			offs := lineOffsets(t, b)
			last := offs[len(offs)-1]
			good := append([]byte(nil), b...)
			damaged := tt.damage(b, last)
			if err := os.WriteFile(path, damaged, 0o600); err != nil {
				t.Fatal(err)
			}
			// Where the dropped record starts: the last line, or the end
			// of the good part when the damage appended something.
			wantOffset := last
			if int64(len(damaged)) > int64(len(good)) {
				wantOffset = int64(len(good))
			}
			wantGood := recs
			if wantOffset == last {
				wantGood = recs[:len(recs)-1]
			}

			c := mustRead(t, path)
			if c.Torn == nil {
				t.Fatal("Torn is nil")
			}
			if c.Torn.Offset != wantOffset || c.Torn.Length != int64(len(damaged))-wantOffset {
				t.Errorf("Torn = %+v, want offset %d and length %d", c.Torn, wantOffset, int64(len(damaged))-wantOffset)
			}
			if !strings.Contains(c.Torn.Reason, tt.reason) {
				t.Errorf("Torn.Reason = %q, want %q", c.Torn.Reason, tt.reason)
			}
			if w := c.Torn.Warning(path); !strings.Contains(w, path) || !strings.Contains(w, fmt.Sprint(wantOffset)) {
				t.Errorf("Warning = %q names neither the file nor the offset", w)
			}
			if c.Size != wantOffset {
				t.Errorf("Size = %d, want %d", c.Size, wantOffset)
			}
			if !sameTypes(c.Records, wantGood) {
				t.Errorf("records %v, want %v", types(c.Records), types(wantGood))
			}

			// Resuming cuts the torn bytes off before appending.
			j, err := Reopen(c)
			if err != nil {
				t.Fatalf("Reopen: %v", err)
			}
			next := Record{Type: RunResumed, Run: &RunInfo{Plan: "p"}, Time: time.Unix(1, 0).UTC()}
			if err := j.Append(next); err != nil {
				t.Fatalf("Append after Reopen: %v", err)
			}
			j.Close()
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			line, _ := encode(next)
			if want := append(append([]byte(nil), damaged[:wantOffset]...), line...); !bytes.Equal(after, want) {
				t.Errorf("after Reopen and Append the file is\n%q\nwant\n%q", after, want)
			}
			again := mustRead(t, path)
			if again.Torn != nil {
				t.Errorf("Torn = %+v after Reopen", again.Torn)
			}
			if want := append(types(wantGood), RunResumed); !reflect.DeepEqual(types(again.Records), want) {
				t.Errorf("records %v, want %v", types(again.Records), want)
			}
		})
	}
}

func TestReopenCleanJournalAppends(t *testing.T) {
	recs := everyRecord()[:2]
	_, path := appendAll(t, recs)
	c := mustRead(t, path)
	j, err := Reopen(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Append(recs[1]); err != nil {
		t.Fatal(err)
	}
	j.Close()
	if got := mustRead(t, path); len(got.Records) != 3 || got.Torn != nil {
		t.Errorf("after Reopen: %v, torn %+v", types(got.Records), got.Torn)
	}
}

func TestReadCorruptMiddle(t *testing.T) {
	recs := everyRecord()[:5]
	tests := []struct {
		name   string
		damage func(b []byte, second int64) []byte // second: where record 2 starts
		reason string
	}{
		{"flipped checksum digit", func(b []byte, second int64) []byte {
			b[second+3] = flipHex(b[second+3])
			return b
		}, "checksum mismatch"},
		{"flipped JSON byte", func(b []byte, second int64) []byte {
			b[second+20] ^= 0x01
			return b
		}, "checksum mismatch"},
		{"checksum not hex", func(b []byte, second int64) []byte {
			b[second] = 'z'
			return b
		}, "malformed checksum"},
		{"lost newline joins two records", func(b []byte, second int64) []byte {
			i := second + int64(bytes.IndexByte(b[second:], '\n'))
			b[i] = ' '
			return b
		}, "checksum mismatch"},
		{"empty line", func(b []byte, second int64) []byte {
			return append(append(append([]byte(nil), b[:second]...), '\n'), b[second:]...)
		}, "no checksum"},
		{"valid checksum of a record without type", func(b []byte, second int64) []byte {
			end := second + int64(bytes.IndexByte(b[second:], '\n'))
			body := []byte(`{"step":"x"}`)
			line := fmt.Appendf(nil, "%08x %s", crcOf(body), body)
			return append(append(append([]byte(nil), b[:second]...), line...), b[end:]...)
		}, "without a type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, path := appendAll(t, recs)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			second := lineOffsets(t, b)[1]
			if err := os.WriteFile(path, tt.damage(b, second), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := Read(path)
			var corrupt *CorruptError
			if !errors.As(err, &corrupt) {
				t.Fatalf("Read = %v, %v; want a *CorruptError", c, err)
			}
			if corrupt.Offset != second || corrupt.Path != path {
				t.Errorf("CorruptError at %s offset %d, want %s offset %d", corrupt.Path, corrupt.Offset, path, second)
			}
			if !strings.Contains(corrupt.Reason, tt.reason) {
				t.Errorf("Reason = %q, want %q", corrupt.Reason, tt.reason)
			}
			if msg := corrupt.Error(); !strings.Contains(msg, path) || !strings.Contains(msg, fmt.Sprint(second)) {
				t.Errorf("Error() = %q names neither the file nor the offset", msg)
			}
		})
	}
}

func TestReadEmptyAndMissing(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	c := mustRead(t, j.Path())
	if len(c.Records) != 0 || c.Torn != nil || c.Size != 0 {
		t.Errorf("empty journal read as %+v", c)
	}
	if _, err := Read(filepath.Join(dir, "nope.journal")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Read of a missing file = %v, want ErrNotExist", err)
	}
}

func TestLast(t *testing.T) {
	tests := []struct {
		name  string
		files []string // under runs/; nil: no runs directory
		want  string   // "" for none
	}{
		{"no runs directory", nil, ""},
		{"empty runs directory", []string{}, ""},
		{"one", []string{"000001.journal"}, "000001.journal"},
		{"highest number, not last by name", []string{"000009.journal", "000010.journal", "000002.journal"}, "000010.journal"},
		{"other files ignored", []string{"000003.journal", "000004.journal.tmp", "notes.journal", "000007", "000000.journal", "-00008.journal"}, "000003.journal"},
		{"only other files", []string{"lock", "x.journal"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.files != nil {
				if err := os.Mkdir(filepath.Join(dir, runsDir), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, runsDir, f), nil, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Last(dir)
			if err != nil {
				t.Fatalf("Last: %v", err)
			}
			want := ""
			if tt.want != "" {
				want = filepath.Join(dir, runsDir, tt.want)
			}
			if got != want {
				t.Errorf("Last = %q, want %q", got, want)
			}
		})
	}
}

func TestCreateNumbersRunsAndRestrictsAccess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	var paths []string
	for range 3 {
		j, err := Create(dir)
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		j.Close()
		paths = append(paths, j.Path())
	}
	for i, p := range paths {
		if want := filepath.Join(dir, runsDir, fmt.Sprintf("%06d.journal", i+1)); p != want {
			t.Errorf("journal %d at %s, want %s", i+1, p, want)
		}
		if last, _ := Last(dir); i == len(paths)-1 && last != p {
			t.Errorf("Last = %s, want the newest %s", last, p)
		}
	}
	// A journal created by hand, or by a run that crashed between
	// choosing its number and writing, is never reused.
	if err := os.WriteFile(filepath.Join(dir, runsDir, "000007.journal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if want := filepath.Join(dir, runsDir, "000008.journal"); j.Path() != want {
		t.Errorf("after 000007 Create made %s, want %s", j.Path(), want)
	}

	for _, tt := range []struct {
		path string
		mode os.FileMode
	}{
		{dir, os.ModeDir | 0o700},
		{filepath.Join(dir, runsDir), os.ModeDir | 0o700},
		{paths[0], 0o600},
		{j.Path(), 0o600},
	} {
		fi, err := os.Stat(tt.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != tt.mode {
			t.Errorf("%s has mode %v, want %v", tt.path, got, tt.mode)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		d    time.Duration
		json string
	}{
		{0, "0"},
		{1500 * time.Millisecond, "1500"},
		{250 * time.Microsecond, "0.25"},
		{2 * time.Hour, "7200000"},
	}
	for _, tt := range tests {
		t.Run(tt.d.String(), func(t *testing.T) {
			b, err := json.Marshal(Duration(tt.d))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.json {
				t.Errorf("Marshal = %s, want %s", b, tt.json)
			}
			var back Duration
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if time.Duration(back) != tt.d {
				t.Errorf("Unmarshal(%s) = %v, want %v", b, time.Duration(back), tt.d)
			}
		})
	}
}

// crcOf computes the CRC-32C of b independently of the package's table.
func crcOf(b []byte) uint32 { return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) }

func flipHex(c byte) byte {
	if c == '0' {
		return '1'
	}
	return '0'
}

func types(recs []Record) []string {
	out := []string{}
	for _, r := range recs {
		out = append(out, r.Type)
	}
	return out
}

func sameTypes(a, b []Record) bool { return reflect.DeepEqual(types(a), types(b)) }

func TestWriteIsMadeDurableByTheNextAppendOrClose(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Write(Record{Type: StepStarted, Step: "a"}); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Syncs != 0 || st.Records != 1 {
		t.Fatalf("after Write: %+v, want 1 record and no fsync", st)
	}
	if err := j.Append(Record{Type: StepSucceeded, Step: "a"}); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Syncs != 1 {
		t.Fatalf("after Append: %d fsyncs, want the one that covers both records", st.Syncs)
	}
	if err := j.Write(Record{Type: StepStarted, Step: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if st := j.Stats(); st.Syncs != 2 {
		t.Fatalf("after Close: %d fsyncs, want Close to sync the last Write", st.Syncs)
	}
	c, err := Read(j.Path())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range c.Records {
		got = append(got, r.Type+" "+r.Step)
	}
	if want := "step_started a,step_succeeded a,step_started b"; strings.Join(got, ",") != want {
		t.Errorf("records %v, want %s", got, want)
	}
}

// TestFlush: Flush makes what Write wrote durable with one fsync, and has
// nothing to do when everything is.
func TestFlush(t *testing.T) {
	j, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.Write(Record{Type: StepStarted, Step: "a.b"}); err != nil {
		t.Fatal(err)
	}
	if got := j.Stats().Syncs; got != 0 {
		t.Fatalf("Write synced (%d fsyncs)", got)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := j.Stats().Syncs; got != 1 {
		t.Errorf("%d fsyncs after Flush, want 1", got)
	}
	if err := j.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := j.Stats().Syncs; got != 1 {
		t.Errorf("%d fsyncs after a Flush with nothing new, want 1", got)
	}
}

// TestWritePending: what Write takes waits in memory for the next durable
// append, which carries it to the file first, in order; left alone, it is
// written out (not synced) after pendingAge, so that status, reading a run
// in progress, is never far behind.
func TestWritePending(t *testing.T) {
	j, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	types := func() []string {
		c, err := Read(j.Path())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range c.Records {
			out = append(out, r.Type+" "+r.Step)
		}
		return out
	}
	if err := j.Write(Record{Type: StepStarted, Step: "a.x"}); err != nil {
		t.Fatal(err)
	}
	if got := types(); len(got) != 0 {
		t.Errorf("the file holds %v right after Write; want it to wait", got)
	}
	if err := j.Append(Record{Type: StepSucceeded, Step: "a.x"}); err != nil {
		t.Fatal(err)
	}
	if got, want := types(), []string{"step_started a.x", "step_succeeded a.x"}; !slices.Equal(got, want) {
		t.Errorf("after Append: %v, want %v", got, want)
	}
	syncs := j.Stats().Syncs
	if err := j.Write(Record{Type: StepStarted, Step: "b.y"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(types()) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := types(); len(got) != 3 || got[2] != "step_started b.y" {
		t.Errorf("a pending record was not written out: %v", got)
	}
	if j.Stats().Syncs != syncs {
		t.Errorf("writing out a pending record synced the journal")
	}
}

// TestCreateRelativeDir: a relative state directory (the default, .rotplan
// beside the plan) gives journal paths that are absolute, since the run's
// backup paths are derived from them and journaled for later.
func TestCreateRelativeDir(t *testing.T) {
	t.Chdir(t.TempDir())
	j, err := Create(".rotplan")
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if !filepath.IsAbs(j.Path()) {
		t.Errorf("Create(%q).Path() = %q, want an absolute path", ".rotplan", j.Path())
	}
	last, err := Last(".rotplan")
	if err != nil {
		t.Fatal(err)
	}
	if last != j.Path() {
		t.Errorf("Last(%q) = %q, want %q", ".rotplan", last, j.Path())
	}
}

// TestCloseEmpty: a journal nothing was written to is removed when closed
// with CloseEmpty; one with a record stays.
func TestCloseEmpty(t *testing.T) {
	dir := t.TempDir()
	j, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	removed, err := j.CloseEmpty()
	if err != nil || !removed {
		t.Fatalf("CloseEmpty of an empty journal = %v, %v; want true, nil", removed, err)
	}
	if _, err := os.Stat(j.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the empty journal %s is still there: %v", j.Path(), err)
	}
	j, err = Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Write(Record{Type: RunStarted, Run: &RunInfo{Plan: "p"}}); err != nil {
		t.Fatal(err)
	}
	removed, err = j.CloseEmpty()
	if err != nil || removed {
		t.Fatalf("CloseEmpty of a journal with a record = %v, %v; want false, nil", removed, err)
	}
	if _, err := os.Stat(j.Path()); err != nil {
		t.Errorf("the journal with a record is gone: %v", err)
	}
}

// TestBackupDir: a run's backups go to STATE/backups/NNNNNN, beside its
// journal STATE/runs/NNNNNN.journal, as the docs and the operator's
// scripts have them.
func TestBackupDir(t *testing.T) {
	dir := t.TempDir()
	for _, want := range []string{"000001", "000002"} {
		j, err := Create(dir)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := j.BackupDir(), filepath.Join(dir, "backups", want); got != want {
			t.Errorf("BackupDir of %s = %s, want %s", j.Path(), got, want)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := BackupDir("/var/lib/rotplan/runs/000042.journal"), "/var/lib/rotplan/backups/000042"; got != want {
		t.Errorf("BackupDir = %s, want %s", got, want)
	}
}
