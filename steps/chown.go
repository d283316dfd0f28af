package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/command"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/sys/unix"
)

// Chown is the `chown` step kind: it hands files that are already in place
// (written by an earlier step or by hand) to the user and group of the
// service that reads them.
type Chown struct{}

var (
	_ HostChecker  = (*Chown)(nil)
	_ Step         = (*Chown)(nil)
	_ Resumer      = (*Chown)(nil)
	_ Rollbacker   = (*Chown)(nil)
	_ Summarizer   = (*Chown)(nil)
	_ Planner      = (*Chown)(nil)
	_ HostRunner   = (*Chown)(nil)
	_ SettingsUser = (*Chown)(nil)
)

// RunsOnHost implements HostRunner: a chown with `on` hands over the
// paths on that host (see chown_remote.go).
func (*Chown) RunsOnHost() {}

// Settings implements SettingsUser: the host blocks its steps name with
// `on`.
func (*Chown) Settings() Settings { return hostBlock() }

// Spec is the schema of a chown block.
func (*Chown) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"paths": &hcldec.AttrSpec{Name: "paths", Type: cty.List(cty.String), Required: true},
		"owner": &hcldec.AttrSpec{Name: "owner", Type: cty.String},
		"group": &hcldec.AttrSpec{Name: "group", Type: cty.String},
		// trust_owner: as in a write block, a user who may own the
		// directories on the way to the paths.
		"trust_owner": &hcldec.AttrSpec{Name: "trust_owner", Type: cty.String},
	}
}

// Outputs describes what a chown step produces: the ids it set, -1 for the
// one it left unchanged, so a later step can tell whom the files belong to
// without another lookup.
func (*Chown) Outputs() map[string]Output {
	return map[string]Output{
		"paths": {Type: cty.List(cty.String)},
		"uid":   {Type: cty.Number},
		"gid":   {Type: cty.Number},
	}
}

// Validate checks the list of paths and the form of the owner and group.
func (*Chown) Validate(cfg Config) error {
	_, pathsErr := chownPaths(cfg)
	ownErr := ownerSyntax(cfg)
	if !cfg.Set("owner") && !cfg.Set("group") {
		ownErr = attrErr(cfg.Path("owner"), "give owner, group or both")
	}
	return joinErrors(pathsErr, ownErr)
}

// CheckHost implements HostChecker: the owner and group exist, and the
// directories the paths are in are there and safe to work in (see
// openStepDir). The files themselves are not looked at: an earlier step of
// the run may create them.
func (*Chown) CheckHost(ctx context.Context, env *Env, cfg Config) error {
	if _, ok := env.Host(); ok {
		return checkChownRemote(ctx, env, cfg)
	}
	_, _, err := chownOwnership(cfg)
	return joinErrors(err, checkChownDirs(env, cfg), ctx.Err())
}

// checkChownDirs opens the directory of every path the block names, once
// each, and reports those that are missing or unsafe.
func checkChownDirs(env *Env, cfg Config) error {
	paths, err := chownPaths(cfg)
	if err != nil {
		return nil // unknown until the run; Validate reports the rest
	}
	trust, err := stepTrust(cfg)
	if err != nil {
		return err
	}
	return checkEachDir(cfg, paths, filepath.Dir, func(dir string) error {
		_, err := openDirCached(env, dir, trust)
		return err
	})
}

// checkEachDir runs check on the directory (dirOf) of every path, once
// each, and reports at paths those it refuses, naming the path.
func checkEachDir(cfg Config, paths []string, dirOf func(string) string, check func(dir string) error) error {
	var errs []error
	seen := map[string]bool{}
	for _, p := range paths {
		dir := dirOf(p)
		if seen[dir] {
			continue
		}
		seen[dir] = true
		if err := check(dir); err != nil {
			errs = append(errs, &AttrError{Path: cfg.Path("paths"), Err: fmt.Errorf("chown %s: %w", p, err)})
		}
	}
	return joinErrors(errs...)
}

// chownTarget opens the directory of p, as the block's trust allows, and
// checks the entry there: the file a chown may hand over, never a
// symbolic link (changing the link would not change what it names, and
// following it would change what the plan never named) nor a file with
// other hard links, one of which may be a file elsewhere (/etc/shadow,
// linked in by whoever can write in the directory) that must not change
// hands.
func chownTarget(env *Env, p string, trust dirTrust) (*stepDir, fs.FileInfo, error) {
	d, err := openDirCached(env, filepath.Dir(p), trust)
	if err != nil {
		return nil, nil, fmt.Errorf("chown %s: %w", p, err)
	}
	fi, err := d.lstat(filepath.Base(p))
	switch {
	case err != nil:
		return d, nil, fmt.Errorf("chown %s: %w", p, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return d, fi, chownSymlinkError(p)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && !fi.IsDir() && st.Nlink > 1 {
		return d, fi, fmt.Errorf("chown %s: it has %d hard links, and another of them may be a file elsewhere that must not change hands; refusing to change it (give it a link of its own: cp -p, then mv)", p, st.Nlink)
	}
	return d, fi, nil
}

// Apply changes the owner and group of every path and returns them.
func (*Chown) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	if _, ok := env.Host(); ok {
		return applyChownRemote(ctx, env, cfg)
	}
	if err := ctx.Err(); err != nil {
		return cty.NilVal, err
	}
	paths, err := chownPaths(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	uid, gid, err := chownOwnership(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	trust, err := stepTrust(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	// Check every path before changing any, so a typo in the last one does
	// not leave the first ones changed.
	dirs := make([]*stepDir, len(paths))
	for i, p := range paths {
		if dirs[i], _, err = chownTarget(env, p, trust); err != nil {
			return cty.NilVal, err
		}
	}
	for i, p := range paths {
		// AT_SYMLINK_NOFOLLOW: if p was swapped for a symlink since the
		// check above, the link changes owner, never what it points to.
		if err := unix.Fchownat(dirs[i].fd(), filepath.Base(p), uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return cty.NilVal, partlyChanged(i, fmt.Errorf("chown %s: %w", p, err))
		}
		env.Log.Debug("changed owner", "path", p, "owner", describeOwner(cfg.String("owner"), cfg.String("group")), "uid", uid, "gid", gid)
	}

	return chownOutputs(paths, uid, gid), nil
}

// partlyChanged is the error of a chown that failed at its i-th path: with
// earlier paths given their new owner, the step is unsettled, so that the
// rollback gives them their old owners back.
func partlyChanged(i int, err error) error {
	if i > 0 {
		return &UnsettledError{Err: err}
	}
	return err
}

// Plan implements Planner: whom each path belongs to now. A path that is
// not there now is no problem yet, as an earlier step may write it; the
// facts say so.
func (*Chown) Plan(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	if _, ok := env.Host(); ok {
		return planChownRemote(ctx, env, cfg)
	}
	pv := Preview{Action: NoChange, Reason: "every path already has this owner"}
	paths, err := chownPaths(cfg)
	uid, gid, ownErr := chownOwnership(cfg)
	if err != nil || ownErr != nil {
		pv.Action, pv.Reason = Replace, ""
		return pv, ctx.Err() // unknown until the run; Validate reports the rest
	}
	for _, p := range paths {
		if err := checkCanOwn(p, uid, gid); err != nil {
			pv.Problems = append(pv.Problems, attrErr(cfg.Path("owner"), "%v", err))
			break
		}
	}
	if err := checkChownDirs(env, cfg); err != nil {
		pv.Problems = append(pv.Problems, err)
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
		switch {
		case isMissing(err):
			pv.Action, pv.Reason = Replace, ""
			pv.Now = append(pv.Now, Fact{Name: p, Value: "not there now (an earlier step must write it)"})
			continue
		case err != nil:
			pv.Problems = append(pv.Problems, attrErr(cfg.Path("paths"), "%v", err))
			continue
		case fi.Mode()&fs.ModeSymlink != 0:
			pv.Problems = append(pv.Problems, attrErr(cfg.Path("paths"), "%v", chownSymlinkError(p)))
			continue
		}
		pv.Now = append(pv.Now, Fact{Name: p, Value: describeExisting(fi)})
		fuid, fgid, ok := fileOwner(fi)
		if !ok || (uid != -1 && fuid != uid) || (gid != -1 && fgid != gid) {
			pv.Action, pv.Reason = Replace, ""
		}
	}
	pv.Outputs = chownOutputs(paths, uid, gid)
	var observed []string
	for _, p := range paths {
		observed = append(observed, p+": "+observeOwner(p))
	}
	pv.Observed = strings.Join(observed, "; ")
	return pv, ctx.Err()
}

// observeOwner is a path's owner for Preview.Observed, "absent" when the
// path is not there.
func observeOwner(p string) string {
	fi, err := os.Lstat(p)
	switch {
	case isMissing(err):
		return "absent"
	case err != nil:
		return "unreadable"
	}
	uid, gid, _ := fileOwner(fi)
	return fmt.Sprintf("%d:%d", uid, gid)
}

// chownSymlinkError is Apply's refusal of a symbolic link, which Snapshot
// gives too.
func chownSymlinkError(p string) error {
	return fmt.Errorf("chown %s: it is a symbolic link; refusing to change it (give the path it points to instead)", p)
}

// Snapshot implements Rollbacker: the owner and group each path has before
// Apply, in a JSON list under "owners" (one list, so that the order and
// the paths stay exactly as the block gives them). A path that is not
// there yet is recorded as missing: it had no owner to go back to. A
// symbolic link is refused here already, as Apply would refuse it.
func (*Chown) Snapshot(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	if _, ok := env.Host(); ok {
		return snapshotChownRemote(ctx, env, cfg)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	paths, err := chownPaths(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	trust, err := stepTrust(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	owners := make([]chownOwner, 0, len(paths))
	for _, p := range paths {
		d, fi, err := chownTarget(env, p, trust)
		switch {
		case d != nil && isMissing(err):
			owners = append(owners, chownOwner{Path: p, Missing: true})
			continue
		case err != nil:
			return nil, err
		}
		uid, gid, ok := fileOwner(fi)
		if !ok {
			return nil, fmt.Errorf("chown %s: no owner information on this system", p)
		}
		// The directory's identity, so that a rollback in a later process
		// finds that directory again or refuses.
		owners = append(owners, chownOwner{Path: p, UID: &uid, GID: &gid, DirDev: &d.dev, DirIno: &d.ino})
	}
	list, err := json.Marshal(owners)
	if err != nil {
		return nil, err
	}
	snap := map[string]string{"owners": string(list)}
	if trust.uid != -1 {
		snap["trust_uid"] = strconv.Itoa(trust.uid)
	}
	return snap, nil
}

// Rollback implements Rollbacker: every path the snapshot found gets its
// owner and group back. It goes on past a path it cannot restore, so that
// one error lists every chown left to run by hand. A path that was missing
// before is left as it is, and so is one that has gone since: neither has
// an owner to restore. A path that is now a symbolic link is refused, as
// Apply refuses one.
func (*Chown) Rollback(ctx context.Context, env *Env, _ Config, _ cty.Value, snapshot map[string]string) error {
	if _, ok := env.Host(); ok {
		return rollbackChownRemote(ctx, env, snapshot)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	owners, err := parseChownSnapshot(snapshot)
	if err != nil {
		return err
	}
	rec, err := parseRecordedDir(snapshot)
	if err != nil {
		return fmt.Errorf("chown: rolling back: %w", err)
	}
	var errs []error
	for _, o := range owners {
		if o.Missing {
			env.Log.Debug("left as it is: it did not exist before the chown", "path", o.Path)
			continue
		}
		uid, gid := *o.UID, *o.GID
		fail := func(why error) {
			errs = append(errs, fmt.Errorf("chown: rolling back %s: %w; run by hand: chown %d:%d %s", o.Path, why, uid, gid, command.ShellWord(o.Path)))
		}
		dirRec := recordedDir{ok: o.DirDev != nil && o.DirIno != nil, trust: rec.trust}
		if dirRec.ok {
			dirRec.dev, dirRec.ino = *o.DirDev, *o.DirIno
		}
		d, err := rollbackDir(env, filepath.Dir(o.Path), dirRec)
		if err != nil {
			errs = append(errs, fmt.Errorf("chown: rolling back %s: %w; then, in the directory the chown changed (DIR): chown %d:%d DIR/%s", o.Path, err, uid, gid, command.ShellWord(filepath.Base(o.Path))))
			continue
		}
		fi, err := d.lstat(filepath.Base(o.Path))
		switch {
		case isMissing(err):
			env.Log.Warn("no owner to restore: the file is gone", "path", o.Path, "uid", uid, "gid", gid)
			continue
		case err != nil:
			fail(err)
			continue
		case fi.Mode()&fs.ModeSymlink != 0:
			fail(errors.New("it is now a symbolic link; refusing to change it (check where it points first)"))
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == gid {
			// Never changed (a chown that failed part way), or given back.
			env.Log.Debug("already has its old owner", "path", o.Path, "uid", uid, "gid", gid)
			continue
		}
		// As in Apply: a link swapped in since the check changes owner
		// itself, never what it points to.
		if err := unix.Fchownat(d.fd(), filepath.Base(o.Path), uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			fail(err)
			continue
		}
		env.Log.Info("restored owner", "path", o.Path, "uid", uid, "gid", gid)
	}
	return errors.Join(errs...)
}

// chownOwner is one path of a chown snapshot: its owner and group, or
// Missing when it did not exist. The ids are pointers so that uid 0 is
// written, and a snapshot that lacks one is told apart from root.
type chownOwner struct {
	Path    string `json:"path"`
	UID     *int   `json:"uid,omitempty"`
	GID     *int   `json:"gid,omitempty"`
	Missing bool   `json:"missing,omitempty"`
	// DirDev and DirIno identify the directory the path was in.
	DirDev *uint64 `json:"dir_dev,omitempty"`
	DirIno *uint64 `json:"dir_ino,omitempty"`
}

// parseChownSnapshot checks a snapshot read back from the journal; a damaged
// one is an error, as for an intent.
func parseChownSnapshot(snapshot map[string]string) ([]chownOwner, error) {
	bad := func(err error) ([]chownOwner, error) {
		return nil, fmt.Errorf("chown: rolling back: %w", err)
	}
	list, err := snapshotField(snapshot, "owners")
	if err != nil {
		return bad(err)
	}
	var owners []chownOwner
	dec := json.NewDecoder(strings.NewReader(list))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&owners); err != nil {
		return bad(fmt.Errorf("the journaled snapshot's owners are not a JSON list of paths and owners: %w", err))
	}
	if len(owners) == 0 {
		return bad(errors.New("the journaled snapshot lists no path"))
	}
	for i, o := range owners {
		switch {
		case o.Path == "":
			return bad(fmt.Errorf("the journaled snapshot's path %d is empty", i+1))
		case o.Missing && (o.UID != nil || o.GID != nil):
			return bad(fmt.Errorf("the journaled snapshot gives %s an owner although it was missing", o.Path))
		case o.Missing:
			continue
		case o.UID == nil || o.GID == nil:
			return bad(fmt.Errorf("the journaled snapshot lacks the uid or gid of %s", o.Path))
		case *o.UID < 0 || int64(*o.UID) > maxID || *o.GID < 0 || int64(*o.GID) > maxID:
			return bad(fmt.Errorf("the journaled snapshot's owner %d:%d of %s is not a pair of ids", *o.UID, *o.GID, o.Path))
		}
	}
	return owners, nil
}

// chownOutputs builds the outputs object, the same from Apply and Done.
func chownOutputs(paths []string, uid, gid int) cty.Value {
	vals := make([]cty.Value, len(paths))
	for i, p := range paths {
		vals[i] = cty.StringVal(p)
	}
	list := cty.ListValEmpty(cty.String)
	if len(vals) > 0 {
		list = cty.ListVal(vals)
	}
	return cty.ObjectVal(map[string]cty.Value{
		"paths": list,
		"uid":   cty.NumberIntVal(int64(uid)),
		"gid":   cty.NumberIntVal(int64(gid)),
	})
}

// Intent implements Resumer: the paths and the ids they are to have, -1 for
// the one the block leaves alone, as Apply's outputs give them.
func (*Chown) Intent(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	if _, ok := env.Host(); ok {
		return intentChownRemote(ctx, env, cfg)
	}
	paths, err := chownPaths(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	uid, gid, err := chownOwnership(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	list, err := json.Marshal(paths)
	if err != nil {
		return nil, err
	}
	intent := map[string]string{
		"paths": string(list),
		"uid":   strconv.Itoa(uid),
		"gid":   strconv.Itoa(gid),
	}
	trust, err := stepTrust(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	if trust.uid != -1 {
		intent["trust_uid"] = strconv.Itoa(trust.uid)
	}
	return intent, nil
}

// Done implements Resumer. The chown is done when every path has the
// intended owner and group. A path that is now a symbolic link is not done,
// whoever owns the link: Apply refuses links, so running it again reports
// the link rather than a resume passing over it.
func (*Chown) Done(ctx context.Context, env *Env, intent map[string]string) (cty.Value, bool, error) {
	if _, ok := env.Host(); ok {
		return doneChownRemote(ctx, env, intent)
	}
	if err := ctx.Err(); err != nil {
		return cty.NilVal, false, err
	}
	paths, uid, gid, err := parseChownIntent(intent)
	if err != nil {
		return cty.NilVal, false, err
	}
	rec, err := parseRecordedDir(intent)
	if err != nil {
		return cty.NilVal, false, fmt.Errorf("chown: %w", err)
	}
	for _, p := range paths {
		// Through the directory as Apply would find it: a file reached
		// through a symbolic link is not one this step handed over.
		d, err := openDirCached(env, filepath.Dir(p), rec.trust)
		if err != nil {
			env.Log.Debug("chown not done", "path", p, "reason", err.Error())
			return cty.NilVal, false, nil
		}
		fi, err := d.lstat(filepath.Base(p))
		switch {
		case isMissing(err):
			env.Log.Debug("chown not done: missing", "path", p)
			return cty.NilVal, false, nil
		case err != nil:
			return cty.NilVal, false, err
		case fi.Mode()&fs.ModeSymlink != 0:
			env.Log.Debug("chown not done: a symbolic link", "path", p)
			return cty.NilVal, false, nil
		}
		fileUID, fileGID, ok := fileOwner(fi)
		if !ok {
			return cty.NilVal, false, fmt.Errorf("%s: no owner information on this system", p)
		}
		if (uid != -1 && fileUID != uid) || (gid != -1 && fileGID != gid) {
			env.Log.Debug("chown not done", "path", p, "uid", fileUID, "gid", fileGID)
			return cty.NilVal, false, nil
		}
	}
	return chownOutputs(paths, uid, gid), true, nil
}

// parseChownIntent checks an intent read back from the journal; a damaged
// one is an error, as for write.
func parseChownIntent(intent map[string]string) (paths []string, uid, gid int, err error) {
	bad := func(err error) ([]string, int, int, error) {
		return nil, 0, 0, fmt.Errorf("chown: %w", err)
	}
	list, err := intentField(intent, "paths")
	if err != nil {
		return bad(err)
	}
	if err := json.Unmarshal([]byte(list), &paths); err != nil {
		return bad(fmt.Errorf("the journaled intent's paths are not a JSON list of strings: %w", err))
	}
	if len(paths) == 0 {
		return bad(errors.New("the journaled intent lists no path"))
	}
	for i, p := range paths {
		if p == "" {
			return bad(fmt.Errorf("the journaled intent's path %d is empty", i+1))
		}
	}
	if uid, err = intentID(intent, "uid"); err != nil {
		return bad(err)
	}
	if gid, err = intentID(intent, "gid"); err != nil {
		return bad(err)
	}
	if uid == -1 && gid == -1 {
		return bad(errors.New("the journaled intent changes neither owner nor group"))
	}
	return paths, uid, gid, nil
}

// Summary implements Summarizer: the owner as chown(1) writes it, "uid:gid",
// "uid" or ":gid" for the one left alone.
func (*Chown) Summary(outputs cty.Value) []Fact {
	uid, uidOK := outputInt(outputs, "uid")
	gid, gidOK := outputInt(outputs, "gid")
	if !uidOK || !gidOK || (uid < 0 && gid < 0) {
		return nil
	}
	owner := ""
	if uid >= 0 {
		owner = strconv.FormatInt(uid, 10)
	}
	if gid >= 0 {
		owner += ":" + strconv.FormatInt(gid, 10)
	}
	return []Fact{{Name: "owner", Value: owner}}
}

// chownPaths returns the paths argument: a chown that names no file is a
// mistake, not a no-op.
func chownPaths(cfg Config) ([]string, error) {
	paths, err := cfg.StringList("paths")
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, attrErr(cfg.Path("paths"), "must list at least one path")
	}
	for i, p := range paths {
		if p == "" {
			return nil, attrErr(cfg.Path("paths"), "path %d is empty", i+1)
		}
	}
	return paths, nil
}

// chownOwnership resolves owner and group, at least one of which must be
// given.
func chownOwnership(cfg Config) (uid, gid int, err error) {
	if !cfg.Set("owner") && !cfg.Set("group") {
		return -1, -1, attrErr(cfg.Path("owner"), "give owner, group or both")
	}
	return ownership(cfg)
}
