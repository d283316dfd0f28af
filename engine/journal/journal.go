package journal

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A journal file is a sequence of lines, one record each:
//
//	<CRC-32C of the JSON, 8 hex digits> <JSON>\n
//
// JSON never contains a raw newline, so a line is a record. A crash while
// appending leaves at most the last line incomplete or with a wrong
// checksum; that torn tail is dropped. Damage anywhere else is reported.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// runsDir is where a state directory keeps its journals, one per run, named
// by a sequence number so that the last run is the highest.
const runsDir = "runs"

// Journal is a run's journal opened for appending. Append is safe for
// concurrent use: concurrent appends share one fsync (group commit).
type Journal struct {
	path string

	mu      sync.Mutex
	cond    *sync.Cond
	f       *os.File
	written int64 // bytes handed to the kernel
	synced  int64 // bytes known durable
	syncing bool  // an fsync is under way, without the lock
	err     error // sticky until Recover: once the file failed, nothing more is trusted
	appends int   // records appended by this process (failpoints count them)
	syncs   int   // fsyncs done by this process
	waited  time.Duration
	// pending holds records Write took that are not yet handed to the
	// kernel: the next durable append writes them with its own record,
	// in one write. Until then a crash loses them, as a power failure
	// loses records written but not synced; neither matters (see Write).
	// They are written out anyway once they are pendingAge old (so that
	// status, reading the journal of a run in progress, is never far
	// behind) or pendingMax long.
	pending      []byte
	pendingTimer *time.Timer
	closed       bool
}

const (
	pendingAge = 50 * time.Millisecond
	pendingMax = 64 << 10
)

// Stats says what appending cost this process: records appended, fsyncs,
// and the time callers spent in Append, summed over all of them (with
// concurrent appends it can exceed the time that passed).
type Stats struct {
	Records, Syncs int
	Waited         time.Duration
}

// Stats returns the journal's statistics so far.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Stats{Records: j.appends, Syncs: j.syncs, Waited: j.waited}
}

// Create starts a new journal in the state directory dir, for a new run.
// The journal's path is absolute, whatever dir is: what is derived from it
// (the run's backups, recorded in the journal for rollback and resume) must
// not depend on the working directory.
func Create(dir string) (*Journal, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	runs := filepath.Join(dir, runsDir)
	if err := os.MkdirAll(runs, 0o700); err != nil {
		return nil, err
	}
	last, err := lastSeq(runs)
	if err != nil {
		return nil, err
	}
	for seq := last + 1; ; seq++ {
		path := filepath.Join(runs, fmt.Sprintf("%06d.journal", seq))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := syncDir(runs); err != nil {
			f.Close()
			return nil, err
		}
		return newJournal(path, f, 0), nil
	}
}

// Reopen opens an existing journal to append to it, as resume does. c is
// what Read found in it: a torn tail is cut off first, so that new records
// follow the last good one.
func Reopen(c *Contents) (*Journal, error) {
	f, err := os.OpenFile(c.Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return nil, err
	}
	if c.Torn != nil {
		if err := f.Truncate(c.Size); err != nil {
			f.Close()
			return nil, fmt.Errorf("cutting the torn tail off %s: %w", c.Path, err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return newJournal(c.Path, f, c.Size), nil
}

func newJournal(path string, f *os.File, size int64) *Journal {
	j := &Journal{path: path, f: f, written: size, synced: size}
	j.cond = sync.NewCond(&j.mu)
	return j
}

// Path returns the journal's file name.
func (j *Journal) Path() string { return j.path }

// BackupDir returns where this journal's run keeps what its steps replace
// (see BackupDir).
func (j *Journal) BackupDir() string { return BackupDir(j.path) }

// BackupDir returns where the run whose journal is at path keeps what its
// steps replace: STATE/backups/NNNNNN beside STATE/runs/NNNNNN.journal. The
// directory may not exist: it is made by whoever first saves there.
func BackupDir(path string) string {
	state := filepath.Dir(filepath.Dir(path))
	return filepath.Join(state, backupsDir, strings.TrimSuffix(filepath.Base(path), ".journal"))
}

// Append writes a record and returns once it is durable. Records appended
// concurrently are made durable by one fsync: the first waiter syncs for
// everyone whose record was written by then.
func (j *Journal) Append(r Record) error {
	return j.add(r, true)
}

// Write appends a record without waiting for it to be durable: it waits in
// memory (see Journal.pending), and the next Append, Flush or Close makes it
// durable (records reach the file in order, so it is durable before any
// record appended after it). It is for records that recovery does not rely
// on: losing one to a crash or a power failure changes only what a resume
// says, not what it does.
func (j *Journal) Write(r Record) error {
	return j.add(r, false)
}

// add writes a record and, when durable, waits until an fsync covers it.
func (j *Journal) add(r Record, durable bool) error {
	began := time.Now()
	if r.Time.IsZero() {
		r.Time = began.UTC()
	}
	line, err := encode(r)
	if err != nil {
		return err
	}
	defer j.lockTimed(began)()
	if j.err != nil {
		// Kept, in order, for Recover: what happened after the disk
		// filled up still reaches the journal once space is freed.
		j.pending = append(j.pending, line...)
		return j.err
	}
	j.appends++
	n := j.appends // others append while this one waits for its fsync
	failpoint(beforeAppend, n, j.f, line)
	j.pending = append(j.pending, line...)
	if !durable {
		switch {
		case len(j.pending) >= pendingMax:
			if err := j.writePending(); err != nil {
				return err
			}
		case j.pendingTimer == nil:
			j.pendingTimer = time.AfterFunc(pendingAge, j.writeOut)
		}
		failpoint(afterAppend, n, nil, line)
		return nil
	}
	if err := j.writePending(); err != nil {
		return err
	}
	if err := j.syncTo(j.written); err != nil {
		return err
	}
	failpoint(afterAppend, n, nil, line)
	failpoint(afterSync, n, nil, nil)
	return nil
}

// lockTimed takes j.mu and returns what releases it, counting the time
// since began as time a caller waited for the journal (see Stats).
func (j *Journal) lockTimed(began time.Time) (unlock func()) {
	j.mu.Lock()
	return func() {
		j.waited += time.Since(began)
		j.mu.Unlock()
	}
}

// Flush returns once every record written so far is durable, sharing the
// fsync with concurrent appends. With Write, it lets a caller do other work
// while the record it needs durable is not yet: write it, work, then
// flush.
func (j *Journal) Flush() error {
	defer j.lockTimed(time.Now())()
	if j.err != nil {
		return j.err
	}
	if err := j.writePending(); err != nil {
		return err
	}
	if err := j.syncTo(j.written); err != nil {
		return err
	}
	failpoint(afterSync, 0, nil, nil)
	return nil
}

// writePending hands the pending records to the kernel, with j.mu held.
func (j *Journal) writePending() error {
	if j.pendingTimer != nil {
		j.pendingTimer.Stop()
		j.pendingTimer = nil
	}
	if len(j.pending) == 0 || j.err != nil {
		return j.err
	}
	if _, err := j.f.Write(j.pending); err != nil {
		j.err = fmt.Errorf("writing the journal %s: %w", j.path, err)
		return j.err
	}
	j.written += int64(len(j.pending))
	j.pending = j.pending[:0]
	return nil
}

// writeOut writes pending records that have waited pendingAge.
func (j *Journal) writeOut() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.pendingTimer = nil
	if !j.closed {
		j.writePending()
	}
}

// syncTo waits, with j.mu held, until the first mine bytes are durable: an
// fsync under way may have begun before they were written, so unless it
// covers them the caller waits for the next, which the first to find none
// under way makes for everyone (group commit).
func (j *Journal) syncTo(mine int64) error {
	for j.synced < mine && j.err == nil {
		if j.syncing {
			j.cond.Wait()
			continue
		}
		j.syncing = true
		upTo := j.written
		j.mu.Unlock()
		err := j.f.Sync()
		j.mu.Lock()
		j.syncing = false
		j.syncs++
		if err != nil {
			j.err = fmt.Errorf("syncing the journal %s: %w", j.path, err)
		} else {
			j.synced = upTo
		}
		j.cond.Broadcast()
	}
	return j.err
}

// Err returns why the journal cannot be written, nil while it can.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Recover writes again, after a write or an fsync failed (a full disk),
// what the journal kept in memory since: it cuts off whatever part of the
// failed write reached the file, so that the journal ends with its last
// whole record, then writes the records appended since, in order, and
// makes them durable. It returns nil once the journal is whole again; when
// the cause stands, its error, and the journal stays failed.
func (j *Journal) Recover() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.syncing {
		j.cond.Wait()
	}
	if j.err == nil || j.closed {
		return j.err
	}
	failed := j.err
	if err := j.f.Truncate(j.written); err != nil {
		return fmt.Errorf("%w; cutting the failed write off: %v", failed, err)
	}
	j.err = nil
	if err := j.writePending(); err != nil {
		return err
	}
	if err := j.f.Sync(); err != nil {
		j.err = fmt.Errorf("syncing the journal %s: %w", j.path, err)
		return j.err
	}
	j.syncs++
	j.synced = j.written
	return nil
}

// Close makes every record durable and closes the journal file. It returns
// the error of any record that did not reach the disk, earlier ones
// included: a journal that ends early must not pass for a whole one.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	err := j.writePending()
	if err == nil && j.synced < j.written {
		if err = j.f.Sync(); err != nil {
			err = fmt.Errorf("syncing the journal %s: %w", j.path, err)
		} else {
			j.syncs++
			j.synced = j.written
		}
	}
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("closing the journal %s: %w", j.path, cerr)
	}
	return err
}

// CloseEmpty closes the journal and, when nothing was ever written to it (a
// run that stopped before it started: a service out of reach, say), removes its
// file, which would otherwise sit in the state directory as a run that
// never was. It reports whether it removed it.
func (j *Journal) CloseEmpty() (removed bool, err error) {
	j.mu.Lock()
	empty := j.written == 0 && len(j.pending) == 0
	j.mu.Unlock()
	if err := j.Close(); err != nil || !empty {
		return false, err
	}
	if err := os.Remove(j.path); err != nil {
		return false, err
	}
	return true, syncDir(filepath.Dir(j.path))
}

// encode makes a record's line: the CRC-32C of the JSON body in hex, a
// space, the body and a newline.
func encode(r Record) ([]byte, error) {
	line := make([]byte, 9, 512)
	line, err := appendRecord(line, r)
	if err != nil {
		return nil, fmt.Errorf("encoding a journal record: %w", err)
	}
	sum := crc32.Checksum(line[9:], castagnoli)
	for i := range 8 {
		line[i] = hexDigits[sum>>(28-4*i)&0xf]
	}
	line[8] = ' '
	return append(line, '\n'), nil
}

const hexDigits = "0123456789abcdef"

// decode parses one line without its newline.
func decode(line []byte) (Record, error) {
	var r Record
	sum, body, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(sum) != 8 {
		return r, errors.New("no checksum")
	}
	want, err := strconv.ParseUint(string(sum), 16, 32)
	if err != nil {
		return r, errors.New("malformed checksum")
	}
	if crc32.Checksum(body, castagnoli) != uint32(want) {
		return r, errors.New("checksum mismatch")
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("malformed record: %v", err)
	}
	if r.Type == "" {
		return r, errors.New("record without a type")
	}
	return r, nil
}

// Contents is what Read found in a journal.
type Contents struct {
	Path    string
	Records []Record
	// Size is the length of the good part: every record up to the last one
	// that is whole and checks out.
	Size int64
	// Torn is set when the last record was cut short or damaged (a crash in
	// the middle of an append) and has been left out.
	Torn *TornTail
}

// TornTail describes a dropped last record.
type TornTail struct {
	Offset int64 // where it starts
	Length int64 // how many bytes it had
	Reason string
}

// Warning says, for the operator, what was dropped.
func (t *TornTail) Warning(path string) string {
	return fmt.Sprintf("%s: the last record (%d bytes at offset %d) is incomplete (%s), most likely cut short by a crash; it is ignored",
		path, t.Length, t.Offset, t.Reason)
}

// CorruptError is a damaged record that is not the last one: something other
// than a crash changed the journal, and nothing after it can be trusted.
type CorruptError struct {
	Path   string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("journal %s is corrupt at offset %d: %s; records after it cannot be trusted. Move the state directory aside to start afresh",
		e.Path, e.Offset, e.Reason)
}

// Read reads a whole journal. A damaged last record is dropped and described
// in Contents.Torn; a damaged record before the last is a *CorruptError.
func Read(path string) (*Contents, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c := &Contents{Path: path}
	br := bufio.NewReaderSize(f, 64<<10)
	var offset int64
	for {
		line, n, err := readLine(br)
		if n == 0 && err == io.EOF {
			return c, nil
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		start := offset
		offset += n
		var reason string
		var rec Record
		switch {
		case err == io.EOF: // no newline: the append never finished
			reason = "no end of line"
		case line == nil:
			reason = fmt.Sprintf("a record longer than %d MiB", maxRecord>>20)
		default:
			if rec, err = decode(line[:len(line)-1]); err != nil {
				reason = err.Error()
			}
		}
		if reason == "" {
			c.Records = append(c.Records, rec)
			c.Size = offset
			continue
		}
		if _, peekErr := br.Peek(1); peekErr == io.EOF {
			c.Torn = &TornTail{Offset: start, Length: n, Reason: reason}
			return c, nil
		}
		return nil, &CorruptError{Path: path, Offset: start, Reason: reason}
	}
}

// maxRecord bounds what Read holds of one line: records are a few
// kilobytes (step outputs are values of at most 16 MiB), and only damage
// makes a longer line.
const maxRecord = 64 << 20

// readLine reads one line of a journal and returns it with its length n.
// A line longer than maxRecord is read to its end but not kept (line is
// nil), so that a damaged journal costs no more memory than a record.
func readLine(br *bufio.Reader) (line []byte, n int64, err error) {
	kept := true
	for {
		frag, err := br.ReadSlice('\n')
		n += int64(len(frag))
		if kept = kept && n <= maxRecord; kept {
			line = append(line, frag...)
		} else {
			line = nil
		}
		if err != bufio.ErrBufferFull {
			return line, n, err
		}
	}
}

// Last returns the path of the state directory's last journal, or "" when it
// has none.
func Last(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	runs := filepath.Join(dir, runsDir)
	seq, err := lastSeq(runs)
	if err != nil || seq == 0 {
		return "", err
	}
	return filepath.Join(runs, fmt.Sprintf("%06d.journal", seq)), nil
}

func lastSeq(runs string) (int, error) {
	seqs, err := runSeqs(runs)
	if err != nil || len(seqs) == 0 {
		return 0, err
	}
	return seqs[len(seqs)-1], nil
}

// runSeqs returns the numbers of the journals in runs, in increasing order.
func runSeqs(runs string) ([]int, error) {
	entries, err := os.ReadDir(runs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var seqs []int
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".journal")
		if !ok {
			continue
		}
		if n, err := strconv.Atoi(name); err == nil && n > 0 {
			seqs = append(seqs, n)
		}
	}
	sort.Ints(seqs)
	return seqs, nil
}

// Runs returns the paths of the state directory's journals, oldest first.
func Runs(dir string) ([]string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	runs := filepath.Join(dir, runsDir)
	seqs, err := runSeqs(runs)
	paths := make([]string, len(seqs))
	for i, seq := range seqs {
		paths[i] = filepath.Join(runs, fmt.Sprintf("%06d.journal", seq))
	}
	return paths, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
