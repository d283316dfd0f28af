package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
	"github.com/rotplan/rotplan/engine"
)

// peopleView is the view of a run for people, when rotplan was asked to be
// quiet or prints on a terminal; nil means the plain lines, for a log.
// Either way the step-by-step info log lines (a certificate issued, a check
// passed) would be thousands of lines again, so the log says only warnings
// unless -log-level asks for more.
func (c *command) peopleView(out *diagPrinter) runView {
	_, onTerminal := terminalWidth(c.stdout)
	if !c.quiet && !onTerminal {
		return nil
	}
	if !c.given("log-level") {
		c.log.SetLevel(hclog.Warn)
	}
	if c.quiet {
		q := quietView{newLineView(c.stdout, c.stderr, out)}
		q.pal, q.steps = colours(c.stdout, c.noColour), noSteps
		return q
	}
	v := newTermView(c.stdout, c.stderr, out, colours(c.stdout, c.noColour))
	c.logs.to(v.besideStatus(c.stderr))
	return v
}

// quietView is -quiet: nothing per step and no count, only the summary
// (lineView's, without the steps that did not run), the warnings and the
// failures' diagnostics, which lineView.end prints.
type quietView struct{ *lineView }

func (quietView) begin(runStart) {}

// StepStarted implements engine.Observer.
func (quietView) StepStarted(string) {}

// StepFinished implements engine.Observer.
func (quietView) StepFinished(engine.StepResult) {}

// Resuming implements engine.ResumeObserver.
func (quietView) Resuming([]engine.Decision) {}

// RollbackStarted implements engine.RollbackObserver.
func (quietView) RollbackStarted(string) {}

// RollbackFinished implements engine.RollbackObserver.
func (quietView) RollbackFinished(engine.StepResult) {}

// Terminal control sequences: back to the start of the line, and erase
// from the cursor to the end of the line.
const (
	carriageReturn = "\r"
	eraseLine      = "\x1b[K"
)

// termView shows a run on a terminal: one status line rewritten in place
// with a running count and the steps under way, at most once per
// flushEvery, and above it permanent lines only for what the operator must
// see: failures and interruptions, the rollback, what a resume decided, and
// the summary. lineView writes those lines, through aboveStatus.
//
// Steps report from several goroutines. They only update the counts, under
// mu; the terminal is written by a timer (or by the goroutine that writes a
// permanent line), under screen, so that a slow terminal never holds up a
// step.
type termView struct {
	lines *lineView
	out   io.Writer // the terminal

	screen sync.Mutex // held while writing to the terminal
	shown  bool       // a status line is on the screen; guarded by screen

	mu          sync.Mutex
	total, done int
	skipped     int
	rollingBack bool
	undone      int
	seq         uint64
	running     map[string]uint64 // steps under way → their order of starting
	timer       *time.Timer       // pending redraw, nil when none
	ended       bool
}

func newTermView(stdout, stderr io.Writer, diags *diagPrinter, pal palette) *termView {
	v := &termView{out: stdout, running: map[string]uint64{}}
	v.lines = newLineView(aboveStatus{v}, stderr, diags)
	v.lines.pal, v.lines.steps = pal, foldedSteps
	return v
}

func (v *termView) begin(b runStart) {
	v.mu.Lock()
	v.total = b.steps
	v.mu.Unlock()
	v.lines.begin(b) // flushed at once: the status line shows from the start
}

func (v *termView) end(e runEnd) {
	v.mu.Lock()
	v.ended = true
	if v.timer != nil {
		v.timer.Stop()
		v.timer = nil
	}
	v.mu.Unlock()
	v.screen.Lock()
	if v.shown {
		io.WriteString(v.out, carriageReturn+eraseLine)
		v.shown = false
	}
	v.screen.Unlock()
	v.lines.end(e)
}

// StepStarted implements engine.Observer.
func (v *termView) StepStarted(addr string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seq++
	v.running[addr] = v.seq
	v.changed()
}

// StepFinished implements engine.Observer: a step that failed or was
// interrupted, or whose success has a note (how long after a reload a
// check passed), gets a line of its own; the others are counted.
func (v *termView) StepFinished(r engine.StepResult) {
	v.mu.Lock()
	delete(v.running, r.Addr)
	v.done++
	if r.Outcome == engine.Skipped {
		v.skipped++
	}
	v.changed()
	v.mu.Unlock()
	if r.Outcome == engine.Failed || r.Outcome == engine.Interrupted || r.Note != "" {
		v.lines.StepFinished(r)
	}
}

// maxDecisionLines is how many of a resume's decisions to check or redo a
// step are shown one to a line; the rest are counted.
const maxDecisionLines = 10

// Resuming implements engine.ResumeObserver. The steps done earlier are
// counted, on one line; each step checked or carried out again is named
// with why, up to maxDecisionLines.
func (v *termView) Resuming(decisions []engine.Decision) {
	var earlier, skipped int
	var named []engine.Decision
	for _, d := range decisions {
		switch d.Action {
		case engine.ActionSkip:
			earlier++
			if strings.HasPrefix(d.Reason, "skipped") {
				skipped++
			}
		case engine.ActionChecked:
			earlier++
			named = append(named, d)
		case engine.ActionRedo, engine.ActionLeave:
			named = append(named, d)
		}
	}
	v.mu.Lock()
	v.done += earlier
	v.skipped += skipped
	v.changed()
	v.mu.Unlock()
	if n := earlier - skipped; n > 0 {
		v.lines.line("rotplan: %s %s done earlier %s not run again", thousands(n), plural(n, "step", "steps"), plural(n, "is", "are"))
	}
	if skipped > 0 {
		v.lines.line("rotplan: %s %s skipped earlier %s skipped", thousands(skipped), plural(skipped, "step", "steps"), plural(skipped, "stays", "stay"))
	}
	if len(named) > maxDecisionLines {
		v.lines.Resuming(named[:maxDecisionLines])
		v.lines.line("rotplan: and %s more checked or carried out again ('rotplan status' lists them)", thousands(len(named)-maxDecisionLines))
		return
	}
	v.lines.Resuming(named)
}

// RollbackStarted implements engine.RollbackObserver.
func (v *termView) RollbackStarted(addr string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rollingBack = true
	v.seq++
	v.running[addr] = v.seq
	v.changed()
}

// RollbackFinished implements engine.RollbackObserver: each step undone,
// or not, gets a line.
func (v *termView) RollbackFinished(r engine.StepResult) {
	v.mu.Lock()
	delete(v.running, r.Addr)
	if r.Outcome == engine.RolledBack {
		v.undone++
	}
	v.changed()
	v.mu.Unlock()
	v.lines.RollbackFinished(r)
}

// changed has the status line drawn again within flushEvery. v.mu is held.
func (v *termView) changed() {
	if v.timer == nil && !v.ended {
		v.timer = time.AfterFunc(flushEvery, v.redraw)
	}
}

// redraw draws the status line over the one shown.
func (v *termView) redraw() {
	v.screen.Lock()
	defer v.screen.Unlock()
	v.mu.Lock()
	v.timer = nil
	v.mu.Unlock()
	if line, ok := v.status(); ok {
		io.WriteString(v.out, carriageReturn+line+eraseLine)
		v.shown = true
	}
}

// status is the status line as things stand, without its control
// sequences; ok is false once the run has ended.
func (v *termView) status() (line string, ok bool) {
	v.mu.Lock()
	if v.ended {
		v.mu.Unlock()
		return "", false
	}
	p := progress{done: v.done, total: v.total, skipped: v.skipped, rollingBack: v.rollingBack, undone: v.undone}
	p.running = make([]string, 0, len(v.running))
	for addr := range v.running {
		p.running = append(p.running, addr)
	}
	sort.Slice(p.running, func(i, j int) bool { return v.running[p.running[i]] < v.running[p.running[j]] })
	v.mu.Unlock()
	width, _ := terminalWidth(v.out)
	return p.line(width), true
}

// aboveStatus writes permanent lines above the status line: it erases the
// status line, writes the lines, and draws the status line again below
// them, in one write.
type aboveStatus struct{ v *termView }

// Write implements io.Writer.
func (a aboveStatus) Write(b []byte) (int, error) {
	v := a.v
	v.screen.Lock()
	defer v.screen.Unlock()
	var buf strings.Builder
	if v.shown {
		buf.WriteString(carriageReturn + eraseLine)
	}
	buf.Write(b)
	line, ok := v.status()
	if ok {
		buf.WriteString(line + eraseLine)
	}
	v.shown = ok
	if _, err := io.WriteString(v.out, buf.String()); err != nil {
		return 0, err
	}
	return len(b), nil
}

// besideStatus returns a writer for w (stderr, which is likely the same
// terminal) that erases the status line before writing and draws it again
// after, so that a log line does not land in the middle of it.
func (v *termView) besideStatus(w io.Writer) io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		v.screen.Lock()
		defer v.screen.Unlock()
		if v.shown {
			io.WriteString(v.out, carriageReturn+eraseLine)
			v.shown = false
		}
		n, err := w.Write(b)
		if line, ok := v.status(); ok {
			io.WriteString(v.out, line+eraseLine)
			v.shown = true
		}
		return n, err
	})
}

// writerFunc is a function that is an io.Writer.
type writerFunc func([]byte) (int, error)

// Write implements io.Writer.
func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// progress is what the status line shows.
type progress struct {
	done, total, skipped int
	rollingBack          bool
	undone               int
	running              []string // the steps under way, longest first
}

// line writes the status line, at most width-1 columns (a line that fills
// the last column wraps on some terminals, and \r then rewrites only the
// wrapped part):
//
//	[1,250/2,500] 40 skipped, 3 running: write.key["app812"], issue.leaf["app813"] ...
//	[rolling back, 12 undone] 1 running: write.key["app3"]
func (p progress) line(width int) string {
	head := fmt.Sprintf("[%s/%s]", thousands(p.done), thousands(p.total))
	if p.rollingBack {
		head = fmt.Sprintf("[rolling back, %s undone]", thousands(p.undone))
	}
	var parts []string
	if p.skipped > 0 && !p.rollingBack {
		parts = append(parts, thousands(p.skipped)+" skipped")
	}
	if len(p.running) > 0 {
		parts = append(parts, thousands(len(p.running))+" running: ")
	}
	line := head
	if len(parts) > 0 {
		line += " " + strings.Join(parts, ", ")
	}
	limit := max(width-1, 1)
	const more = " ..."
	for i, addr := range p.running {
		next := line
		if i > 0 {
			next += ", "
		}
		next += addr
		last := i == len(p.running)-1
		switch {
		case last && utf8.RuneCountInString(next) <= limit:
			line = next
		case utf8.RuneCountInString(next)+len(more) <= limit:
			line = next
			continue
		case i == 0: // not even one fits: show what fits of it
			line = next
		default:
			line += more
		}
		break
	}
	return truncateRunes(line, limit)
}

// truncateRunes cuts s to at most n runes.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}

// logSink is where a command's log lines go: stderr, until a terminal view
// takes them to keep its status line whole around them.
type logSink struct {
	mu sync.Mutex
	w  io.Writer
}

// Write implements io.Writer.
func (s *logSink) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// to sends the log lines to w from now on.
func (s *logSink) to(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = w
}

var (
	_ runView = (*termView)(nil)
	_ runView = quietView{}
)
