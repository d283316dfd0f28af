package engine

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/rotplan/rotplan/engine/journal"
	"github.com/rotplan/rotplan/steps"
)

// finish supersedes what a resume replaced, once everything succeeded, and
// closes the run in the journal.
func (x *execution) finish(ctx context.Context, err error) (*Report, error) {
	status := journal.StatusSucceeded
	switch {
	case err == nil:
		x.supersede(ctx)
		x.removeBackups()
		if len(x.report.HostsFailed) > 0 {
			status = journal.StatusHostsFailed
		}
	case ctx.Err() != nil:
		status = journal.StatusInterrupted
		x.report.Interrupted = true
	case x.opts.Rollback:
		x.rollback(ctx)
		status = journal.StatusRolledBack
		if x.report.Rollback == RollbackIncomplete {
			status = journal.StatusRollbackIncomplete
		} else {
			x.removeBackups()
		}
	default:
		status = journal.StatusFailed
	}
	x.recoverJournal()
	if rerr := x.record(journal.Record{Type: journal.RunFinished, Status: status}); rerr != nil && err == nil {
		err = fmt.Errorf("the run succeeded but its end could not be journaled: %w", rerr)
	}
	x.report.Duration = time.Since(x.start)
	return x.report, err
}

// recoverJournal writes, once the run is over, what a journal that failed
// (a full disk) kept in memory since, now that the rollback may have freed
// space (its backups gone). When it still cannot, the run says that the
// journal does not show how it ended, and what to do.
func (x *execution) recoverJournal() {
	j := x.opts.Journal
	if j == nil || j.Err() == nil {
		return
	}
	if err := j.Recover(); err != nil {
		x.report.Warnings = append(x.report.Warnings, fmt.Sprintf(
			"the journal %s could not be written (%v): it does not show how the run ended. "+
				"What this run reports comes from what it knew in memory. Free space in %s, then start the next run with -fresh: "+
				"a resume would go by the journal alone", j.Path(), err, filepath.Dir(filepath.Dir(j.Path()))))
	}
}

// supersede hands each result a resume replaced to its kind.
func (x *execution) supersede(ctx context.Context) {
	p := x.p
	for _, n := range p.order {
		addr := n.addr
		previous := x.superseded[addr]
		s, ok := n.kind.(steps.Superseder)
		if len(previous) == 0 || !ok {
			continue
		}
		cfg, _, diags := p.decode(n, p.contextFor(n, x.outputs))
		if diags.HasErrors() {
			x.report.Warnings = append(x.report.Warnings, fmt.Sprintf("%s: cannot deal with superseded results: %s", addr, diags.Error()))
			continue
		}
		for _, prev := range previous {
			note, err := s.Supersede(ctx, x.named(n), cfg, prev)
			if err != nil {
				x.report.Warnings = append(x.report.Warnings, fmt.Sprintf("%s: %v", addr, err))
				continue
			}
			raw, _ := journalOutputs(n, prev)
			x.report.Superseded = append(x.report.Superseded, addr+": "+note)
			if err := x.record(journal.Record{Type: journal.StepSuperseded, Step: addr, Note: note, Outputs: raw}); err != nil {
				x.report.Warnings = append(x.report.Warnings, fmt.Sprintf("%s: %s, but the journal could not record it: %v", addr, note, err))
			}
		}
	}
}
