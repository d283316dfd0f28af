package steps

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Write is the `write` step kind: it puts a value (a certificate, a private
// key) into a file, replacing the file atomically so that a service reading
// it never sees half a key, and so that a key is never readable by anyone
// but its final owner, not even while it is being written.
type Write struct{}

var (
	_ HostChecker       = (*Write)(nil)
	_ Step              = (*Write)(nil)
	_ Resumer           = (*Write)(nil)
	_ Rollbacker        = (*Write)(nil)
	_ Summarizer        = (*Write)(nil)
	_ Planner           = (*Write)(nil)
	_ CertificateHolder = (*Write)(nil)
)

// Spec is the schema of a write block.
func (*Write) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"path":    &hcldec.AttrSpec{Name: "path", Type: cty.String, Required: true},
		"content": &hcldec.AttrSpec{Name: "content", Type: cty.String, Required: true},
		"mode":    &hcldec.AttrSpec{Name: "mode", Type: cty.String},
		"owner":   &hcldec.AttrSpec{Name: "owner", Type: cty.String},
		"group":   &hcldec.AttrSpec{Name: "group", Type: cty.String},
	}
}

// Outputs describes what a write step produces. None is sensitive: the
// digest identifies the content without revealing it, so later steps and the
// journal can tell which key was installed.
func (*Write) Outputs() map[string]Output {
	return map[string]Output{
		"path":   {Type: cty.String},
		"sha256": {Type: cty.String},
		"size":   {Type: cty.Number},
		"mode":   {Type: cty.String},
	}
}

// Validate checks the path, the mode, and the form of the owner and group.
func (*Write) Validate(cfg Config) error {
	_, pathErr := writePath(cfg)
	_, modeErr := writeMode(cfg)
	return joinErrors(pathErr, modeErr, ownerSyntax(cfg))
}

// CheckHost implements HostChecker: the directory is there, the target is
// something a write may replace, and the owner and group exist.
func (*Write) CheckHost(ctx context.Context, _ *Env, cfg Config) error {
	_, _, ownErr := ownership(cfg)
	return joinErrors(validateWritePath(cfg), ownErr, ctx.Err())
}

// Staged implements Staged: Apply fills and flushes a temporary file first,
// then commits and renames it over the target.
func (*Write) Staged() {}

// Apply writes the file and returns its path, digest, size and mode.
func (*Write) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
	if err := ctx.Err(); err != nil {
		return cty.NilVal, err
	}
	r, err := readWrite(cfg)
	if err != nil {
		return cty.NilVal, err
	}

	log := env.Log
	digest := contentDigest(r.content)
	// A file already as the write would leave it is left alone, as the
	// preview says ("no change"): replacing it would change nothing but
	// its inode.
	if fi, err := os.Lstat(r.path); err == nil && fi.Mode().IsRegular() && sameFile(r.path, fi, digest, r.mode, r.uid, r.gid) {
		env.NoChange("the file already has this content, mode and owner")
		log.Debug("file already in place", "path", r.path, "sha256", digest)
		return writeOutputs(r.path, digest, int64(len(r.content)), r.mode), nil
	}
	if err := writeFileAtomic(env, r.path, r.content, r.mode, r.uid, r.gid); err != nil {
		return cty.NilVal, err
	}
	log.Debug("wrote file", "path", r.path, "mode", formatMode(r.mode),
		"owner", describeOwner(cfg.String("owner"), cfg.String("group")),
		"size", len(r.content), "sha256", digest)
	return writeOutputs(r.path, digest, int64(len(r.content)), r.mode), nil
}

// Plan implements Planner: what is at path now, whether the directory takes
// the new file, and whether the file already is what the write would leave
// (then nothing changes).
func (*Write) Plan(ctx context.Context, _ *Env, cfg Config) (Preview, error) {
	pv := Preview{Action: Replace}
	p, err := writePath(cfg)
	if err != nil {
		if err == ErrUnknown {
			err = nil
		}
		return pv, err
	}
	mode, modeErr := writeMode(cfg)
	uid, gid, ownErr := ownership(cfg)
	if err := checkWritableDir(filepath.Dir(p)); err != nil {
		pv.Problems = append(pv.Problems, attrErr(cfg.Path("path"), "%v", err))
	}
	if ownErr == nil {
		if err := checkCanOwn(p, uid, gid); err != nil {
			pv.Problems = append(pv.Problems, attrErr(cfg.Path("owner"), "%v", err))
		}
	}
	fi, err := os.Lstat(p)
	switch {
	case isMissing(err):
		pv.Action = Create
		pv.Now = append(pv.Now, Fact{Name: "file", Value: "does not exist"})
	case err != nil:
		pv.Problems = append(pv.Problems, attrErr(cfg.Path("path"), "%v", err))
	default:
		pv.Now = append(pv.Now, describeFile(p, fi, time.Now())...)
		if err := checkWriteTarget(p); err != nil {
			pv.Problems = append(pv.Problems, attrErr(cfg.Path("path"), "%v", err))
		}
	}
	outputs := map[string]cty.Value{
		"path":   cty.StringVal(p),
		"sha256": cty.UnknownVal(cty.String),
		"size":   cty.UnknownVal(cty.Number),
		"mode":   cty.UnknownVal(cty.String),
	}
	if modeErr == nil {
		outputs["mode"] = cty.StringVal(formatMode(mode))
	}
	if cfg.Known("content") {
		content := []byte(cfg.String("content"))
		digest := contentDigest(content)
		outputs["sha256"] = cty.StringVal(digest)
		outputs["size"] = cty.NumberIntVal(int64(len(content)))
		if pv.Action == Replace && modeErr == nil && ownErr == nil && fi != nil && fi.Mode().IsRegular() && sameFile(p, fi, digest, mode, uid, gid) {
			pv.Action, pv.Reason = NoChange, "the file already has this content, mode and owner"
		}
	}
	pv.Outputs = cty.ObjectVal(outputs)
	pv.Files = []string{p}
	pv.Observed = observeFile(p)
	return pv, ctx.Err()
}

// Certificates implements CertificateHolder: the file at path when it
// holds a certificate. What is in a file that is missing or cannot be read
// is told by the content alone: when that is known and holds a certificate,
// the file is named with the error; otherwise (content from an issue step,
// known after the run) it may as well be meant for a key, and is left out.
func (*Write) Certificates(cfg Config) []CertificateFile {
	p, err := writePath(cfg)
	if err != nil {
		return nil
	}
	c, err := readCertificateFile(p)
	switch {
	case err == nil:
		return []CertificateFile{{Path: p, Certificate: c}}
	case cfg.Known("content") && firstCertificate([]byte(cfg.String("content"))) != nil:
		return []CertificateFile{{Path: p, Err: err}}
	}
	return nil
}

// sameFile reports whether the file at p already has the digest, mode and
// (where set) owner a write would give it.
func sameFile(p string, fi fs.FileInfo, digest string, mode os.FileMode, uid, gid int) bool {
	if fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != mode {
		return false
	}
	fuid, fgid, ok := fileOwner(fi)
	if !ok || (uid != -1 && fuid != uid) || (gid != -1 && fgid != gid) {
		return false
	}
	got, _, ok, err := fileDigest(p, fi, maxPEMRead)
	return err == nil && ok && got == digest
}

// Intent implements Resumer: the file's digest, size, mode and, when the
// block sets them, owner and group, which is all Done needs to recognise the
// file Apply leaves, and nothing of the content itself.
func (*Write) Intent(cfg Config) (map[string]string, error) {
	r, err := readWrite(cfg)
	if err != nil {
		return nil, err
	}
	intent := map[string]string{
		"path":   r.path,
		"sha256": contentDigest(r.content),
		"size":   strconv.Itoa(len(r.content)),
		"mode":   formatMode(r.mode),
	}
	if r.uid != -1 {
		intent["uid"] = strconv.Itoa(r.uid)
	}
	if r.gid != -1 {
		intent["gid"] = strconv.Itoa(r.gid)
	}
	return intent, nil
}

// Done implements Resumer. The write is done when path is a regular file
// (a symlink is not: Apply never leaves one) with the intended content,
// permission bits and, where the block set them, owner and group. Ownership
// the block left alone is not checked, since Apply did not choose it either.
func (*Write) Done(ctx context.Context, env *Env, intent map[string]string) (cty.Value, bool, error) {
	if err := ctx.Err(); err != nil {
		return cty.NilVal, false, err
	}
	want, err := parseWriteIntent(intent)
	if err != nil {
		return cty.NilVal, false, err
	}
	notDone := func(why string) (cty.Value, bool, error) {
		env.Log.Debug("the file is not as the write would leave it", "path", want.path, "reason", why)
		return cty.NilVal, false, nil
	}
	fi, err := os.Lstat(want.path)
	switch {
	case isMissing(err):
		return notDone("missing")
	case err != nil:
		return cty.NilVal, false, err
	case !fi.Mode().IsRegular():
		return notDone("not a regular file")
	}
	if got := fi.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky); got != want.mode {
		return notDone("mode " + formatMode(got) + fileModeSpecial(got))
	}
	uid, gid, ok := fileOwner(fi)
	if !ok {
		return cty.NilVal, false, fmt.Errorf("%s: no owner information on this system", want.path)
	}
	if (want.uid != -1 && uid != want.uid) || (want.gid != -1 && gid != want.gid) {
		return notDone(fmt.Sprintf("owned by %d:%d", uid, gid))
	}
	switch {
	case fi.Size() != want.size:
		return notDone("size differs")
	case fi.Size() > maxResumeRead:
		return notDone("too large to be a key or certificate")
	}
	digest, size, ok, err := fileDigest(want.path, fi, maxResumeRead)
	switch {
	case err != nil:
		return cty.NilVal, false, err
	case !ok:
		return notDone("replaced while being checked")
	case digest != want.sha256:
		return notDone("content differs")
	}
	return writeOutputs(want.path, digest, size, want.mode), true, nil
}

// Snapshot implements Rollbacker. When the file is there, it keeps a copy
// in env.Backups and records where, with the digest, mode and owner of the
// original; when it is not, it records that, since then undoing the write
// means removing the file. Only the digest of the content is recorded: it
// may be the private key the rotation replaces.
func (*Write) Snapshot(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := writePath(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	fi, err := os.Lstat(p)
	if err := checkTarget(p, fi, err); err != nil {
		return nil, err
	}
	switch {
	case isMissing(err):
		return map[string]string{"existed": "false", "path": p}, nil
	case err != nil:
		return nil, fmt.Errorf("backing up %s: %w", p, err)
	case env.Backups == "":
		return nil, fmt.Errorf("backing up %s: the run keeps no backups, and rolling back this write needs a copy of the file it replaces", p)
	}
	saved, err := saveBackup(env.Backups, p)
	if err != nil {
		return nil, fmt.Errorf("backing up %s: %w", p, err)
	}
	env.Log.Debug("kept a copy of the file the write replaces", "path", p, "backup", saved.backup,
		"sha256", saved.sha256, "mode", chmodMode(saved.mode), "uid", saved.uid, "gid", saved.gid)
	return map[string]string{
		"existed": "true",
		"path":    p,
		"backup":  saved.backup,
		"sha256":  saved.sha256,
		"mode":    chmodMode(saved.mode),
		"uid":     strconv.Itoa(saved.uid),
		"gid":     strconv.Itoa(saved.gid),
	}, nil
}

// Rollback implements Rollbacker: it puts the copy Snapshot kept back, with
// its mode and owner, through the same atomic replacement Apply uses (a
// service reading the file sees the new one or the old one, and a restored
// key is never readable by anyone but its owner on the way), or removes the
// file when there was none. The snapshot's path is used, not the block's:
// the snapshot records what was changed. Both are idempotent, so a rollback
// interrupted part way can simply run again. The backup is left in place.
func (*Write) Rollback(ctx context.Context, env *Env, _ Config, _ cty.Value, snapshot map[string]string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, err := parseWriteSnapshot(snapshot)
	if err != nil {
		return err
	}
	if !s.existed {
		return removeWritten(env, s.path)
	}
	return restoreWritten(env, s)
}

// writeSnapshot is a journaled write snapshot, checked.
type writeSnapshot struct {
	existed  bool
	path     string
	backup   string
	sha256   string
	mode     os.FileMode
	uid, gid int
}

// byHand says how to do what restoreWritten does, for an error that leaves
// it to the operator: from the backup, or, when the backup cannot be
// trusted, from another copy (COPY in the command).
func (s writeSnapshot) byHand(backupOK bool) string {
	from, src := "", shellQuote(s.backup)
	if !backupOK {
		from, src = " from a copy you trust", "COPY"
	}
	return fmt.Sprintf("restore %s by hand%s: install -m %s -o %d -g %d %s %s",
		s.path, from, chmodMode(s.mode), s.uid, s.gid, src, shellQuote(s.path))
}

// parseWriteSnapshot checks a snapshot read back from the journal; as with
// an intent, a damaged one is an error, never something to guess around.
func parseWriteSnapshot(snapshot map[string]string) (writeSnapshot, error) {
	var s writeSnapshot
	bad := func(err error) (writeSnapshot, error) {
		return writeSnapshot{}, fmt.Errorf("write: rolling back: %w", err)
	}
	var err error
	if s.path, err = snapshotField(snapshot, "path"); err != nil {
		return bad(err)
	}
	if s.path == "" {
		return bad(errors.New("the journaled snapshot's path is empty"))
	}
	existed, err := snapshotField(snapshot, "existed")
	if err != nil {
		return bad(err)
	}
	switch existed {
	case "false":
		return s, nil
	case "true":
		s.existed = true
	default:
		return bad(fmt.Errorf("the journaled snapshot's existed %q is neither \"true\" nor \"false\"", existed))
	}
	if s.backup, err = snapshotField(snapshot, "backup"); err != nil {
		return bad(err)
	}
	if !filepath.IsAbs(s.backup) {
		return bad(fmt.Errorf("the journaled snapshot's backup %q is not an absolute path", s.backup))
	}
	if s.sha256, err = snapshotField(snapshot, "sha256"); err != nil {
		return bad(err)
	}
	if !isHexDigest(s.sha256) {
		return bad(fmt.Errorf("the journaled snapshot's sha256 %q is not a SHA-256 in lower-case hex", s.sha256))
	}
	mode, err := snapshotField(snapshot, "mode")
	if err != nil {
		return bad(err)
	}
	if s.mode, err = parseChmodMode(mode); err != nil {
		return bad(fmt.Errorf("the journaled snapshot's mode: %w", err))
	}
	if s.uid, err = journaledID(snapshot, "snapshot", "uid", false); err != nil {
		return bad(err)
	}
	if s.gid, err = journaledID(snapshot, "snapshot", "gid", false); err != nil {
		return bad(err)
	}
	return s, nil
}

// restoreWritten puts a backup back in place. The backup is checked against
// the digest Snapshot recorded before it goes anywhere: a damaged or
// replaced copy must not become the service's certificate or key.
func restoreWritten(env *Env, s writeSnapshot) error {
	fail := func(why error, backupOK bool) error {
		return fmt.Errorf("write: rolling back %s: %w; %s", s.path, why, s.byHand(backupOK))
	}
	content, err := readBackup(s.backup)
	if err != nil {
		return fail(err, false)
	}
	if got := contentDigest(content); got != s.sha256 {
		return fail(fmt.Errorf("backup %s is damaged: its SHA-256 is %s, the snapshot recorded %s", s.backup, got, s.sha256), false)
	}
	if err := checkWriteTarget(s.path); err != nil {
		// install(1) would copy into a directory, not replace it.
		return fmt.Errorf("write: rolling back %s: %w; move it aside, then %s", s.path, err, s.byHand(true))
	}
	if err := writeFileAtomic(env, s.path, content, s.mode, s.uid, s.gid); err != nil {
		return fail(err, true)
	}
	env.Log.Info("restored the file the write replaced", "path", s.path, "mode", chmodMode(s.mode),
		"owner", fmt.Sprintf("%d:%d", s.uid, s.gid), "sha256", s.sha256, "backup", s.backup)
	return nil
}

// removeWritten removes the file a write created where there was none. It
// removes a regular file only: anything else at the path is not what the
// write left, so it is for the operator to judge.
func removeWritten(env *Env, path string) error {
	fail := func(why error) error {
		return fmt.Errorf("write: rolling back %s, which did not exist before: %w; check it, and remove it by hand if it should not be there: rm %s", path, why, shellQuote(path))
	}
	fi, err := os.Lstat(path)
	switch {
	case isMissing(err):
		env.Log.Info("the file the write created is already gone", "path", path)
		return nil
	case err != nil:
		return fail(err)
	case !fi.Mode().IsRegular():
		return fail(fmt.Errorf("it is now %s, not the file the write left; refusing to remove it", describeFileType(fi.Mode())))
	}
	if err := os.Remove(path); err != nil && !isMissing(err) {
		return fail(err)
	}
	dir := filepath.Dir(path)
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write: rolling back: removed %s but could not flush directory %s: %w", path, dir, err)
	}
	env.Log.Info("removed the file the write created", "path", path)
	return nil
}

// describeFileType names the kind of a non-regular file, symbolic links
// included, for an error message.
func describeFileType(m fs.FileMode) string {
	if m&fs.ModeSymlink != 0 {
		return "a symbolic link"
	}
	return fileType(m)
}

// fileModeSpecial names the setuid, setgid and sticky bits formatMode leaves
// out, so a reason never reads "mode 0644 is not 0644".
func fileModeSpecial(m fs.FileMode) string {
	if m&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) == 0 {
		return ""
	}
	return " with setuid, setgid or sticky"
}

// Summary implements Summarizer. The digest is given in full, so an
// operator can compare it with sha256sum's output on the host.
func (*Write) Summary(outputs cty.Value) []Fact {
	var facts []Fact
	for _, name := range []string{"path", "sha256", "mode"} {
		if s, ok := outputString(outputs, name); ok {
			facts = append(facts, Fact{Name: name, Value: s})
		}
	}
	return facts
}

// writeRequest is a write block read for Apply or Intent.
type writeRequest struct {
	path     string
	content  []byte
	mode     os.FileMode
	uid, gid int
}

// readWrite reads a write block at apply time, when every value must be
// known. Apply and Intent share it so that an intent describes exactly the
// file Apply writes.
func readWrite(cfg Config) (writeRequest, error) {
	var r writeRequest
	var err error
	if r.path, err = writePath(cfg); err != nil {
		return r, mustBeKnown(err)
	}
	if !cfg.Known("content") {
		return r, mustBeKnown(ErrUnknown)
	}
	r.content = []byte(cfg.String("content"))
	if r.mode, err = writeMode(cfg); err != nil {
		return r, mustBeKnown(err)
	}
	if r.uid, r.gid, err = ownership(cfg); err != nil {
		return r, mustBeKnown(err)
	}
	return r, nil
}

// writeOutputs builds the outputs object, the same from Apply and Done.
func writeOutputs(path, digest string, size int64, mode os.FileMode) cty.Value {
	return cty.ObjectVal(map[string]cty.Value{
		"path":   cty.StringVal(path),
		"sha256": cty.StringVal(digest),
		"size":   cty.NumberIntVal(size),
		"mode":   cty.StringVal(formatMode(mode)),
	})
}

// writeIntent is a journaled write intent, checked.
type writeIntent struct {
	path     string
	sha256   string
	size     int64
	mode     os.FileMode
	uid, gid int // -1: not set by the block, not checked
}

// parseWriteIntent checks an intent read back from the journal. A damaged
// one is an error rather than "not done": running the step again would hide
// that the journal cannot be trusted.
func parseWriteIntent(intent map[string]string) (writeIntent, error) {
	w := writeIntent{uid: -1, gid: -1}
	bad := func(err error) (writeIntent, error) {
		return writeIntent{}, fmt.Errorf("write: %w", err)
	}
	var err error
	if w.path, err = intentField(intent, "path"); err != nil {
		return bad(err)
	}
	if w.path == "" {
		return bad(errors.New("the journaled intent's path is empty"))
	}
	if w.sha256, err = intentField(intent, "sha256"); err != nil {
		return bad(err)
	}
	if !isHexDigest(w.sha256) {
		return bad(fmt.Errorf("the journaled intent's sha256 %q is not a SHA-256 in lower-case hex", w.sha256))
	}
	size, err := intentField(intent, "size")
	if err != nil {
		return bad(err)
	}
	if w.size, err = strconv.ParseInt(size, 10, 64); err != nil || w.size < 0 || !isDigits(size) {
		return bad(fmt.Errorf("the journaled intent's size %q is not a byte count", size))
	}
	mode, err := intentField(intent, "mode")
	if err != nil {
		return bad(err)
	}
	if w.mode, err = parseMode(mode); err != nil {
		return bad(fmt.Errorf("the journaled intent's mode: %w", err))
	}
	for _, id := range []struct {
		key string
		dst *int
	}{{"uid", &w.uid}, {"gid", &w.gid}} {
		if _, ok := intent[id.key]; !ok {
			continue
		}
		if *id.dst, err = intentID(intent, id.key); err != nil {
			return bad(err)
		}
	}
	return w, nil
}

// writePath returns the path argument, refusing one that can only name a
// directory: the rename at the end of a write would fail, or worse, the
// temporary file would land somewhere unexpected.
func writePath(cfg Config) (string, error) {
	p, err := cfg.RequireString("path")
	if err != nil {
		return "", err
	}
	switch base := filepath.Base(p); {
	case strings.HasSuffix(p, "/"), base == ".", base == "..", base == "/":
		return "", attrErr(cfg.Path("path"), "%q names a directory, not a file", p)
	}
	return p, nil
}

// validateWritePath checks what can be checked before the run: that the
// directory is there and that the target is not something a write must not
// replace.
// dirsSeen holds the directories validateWritePath found to be directories:
// a plan that writes hundreds of files into one checks it once (were it to
// go away afterwards, creating the file in it would fail, and say so).
var dirsSeen sync.Map

func validateWritePath(cfg Config) error {
	p, err := writePath(cfg)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if _, seen := dirsSeen.Load(dir); !seen {
		fi, err := os.Stat(dir)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return attrErr(cfg.Path("path"), "directory %s does not exist", dir)
		case err != nil:
			return attrErr(cfg.Path("path"), "%v", err)
		case !fi.IsDir():
			return attrErr(cfg.Path("path"), "%s is not a directory", dir)
		}
		dirsSeen.Store(dir, true)
	}
	if err := checkWriteTarget(p); err != nil {
		return &AttrError{Path: cfg.Path("path"), Err: err}
	}
	return nil
}

// writeMode returns the mode the file gets. A sensitive value (a private key)
// gets 0600 by default and may never be readable by "other": a plan that
// says otherwise is wrong, not merely unusual.
func writeMode(cfg Config) (os.FileMode, error) {
	sensitive := cfg.Sensitive("content")
	if !cfg.Set("mode") {
		if sensitive {
			return 0o600, nil
		}
		return 0o644, nil
	}
	if !cfg.Known("mode") {
		return 0, ErrUnknown
	}
	s := cfg.String("mode")
	m, err := parseMode(s)
	if err != nil {
		return 0, &AttrError{Path: cfg.Path("mode"), Err: err}
	}
	if sensitive && m&0o007 != 0 {
		return 0, attrErr(cfg.Path("mode"), "%s would let every user on the host read or change a sensitive value (a private key?): give no permission to others, as in \"0600\" or \"0640\"", formatMode(m))
	}
	return m, nil
}

// checkWriteTarget refuses to replace anything but a regular file. A symlink
// in particular may have been planted to redirect a key elsewhere, and
// replacing it would silently turn a link someone set up on purpose into a
// file.
func checkWriteTarget(path string) error {
	fi, err := os.Lstat(path)
	return checkTarget(path, fi, err)
}

// checkTarget is checkWriteTarget for what os.Lstat(path) returned.
func checkTarget(path string, fi fs.FileInfo, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; refusing to replace it (give the path it points to instead)", path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file (%s); refusing to replace it", path, fileType(fi.Mode()))
	}
	return nil
}

// fileType names the kind of a non-regular file for an error message.
func fileType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	default:
		return "mode " + m.Type().String()
	}
}

// writeFileAtomic replaces path with a file holding content, owned by uid and
// gid (-1: left as created) with exactly mode, whatever the umask. Readers see
// either the old file or the whole new one: the content goes to a temporary
// file in the same directory (so the rename cannot cross file systems), is
// flushed, and is then renamed over the target. The temporary file grants
// nothing to group or others until its owner and group are final, so a key
// never passes through a state where the wrong group can read it. The
// rename is the change: env.Commit comes right before it (see Staged), and
// when it fails the temporary file is removed and nothing has changed.
func writeFileAtomic(env *Env, path string, content []byte, mode os.FileMode, uid, gid int) (err error) {
	log := env.Log
	old, err := os.Lstat(path)
	if err := checkTarget(path, old, err); err != nil {
		return err
	}
	if err != nil {
		old = nil
	}

	dir := filepath.Dir(path)
	f, err := createTemp(dir, filepath.Base(path), mode)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if err != nil {
			f.Close()
			if !renamed {
				os.Remove(tmp)
			}
		}
	}()

	if _, err := f.Write(content); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("writing %s: flushing: %w", path, err)
	}
	if uid != -1 || gid != -1 {
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("writing %s: setting owner %d and group %d: %w", path, uid, gid, err)
		}
	}
	// fchmod, unlike open, is not subject to the umask.
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("writing %s: setting mode %s: %w", path, formatMode(mode), err)
	}
	if old != nil {
		noteOwnerChange(log, path, old, f, uid, gid)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := env.Commit(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	renamed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("wrote %s but could not flush directory %s: %w", path, dir, err)
	}
	return nil
}

// noteOwnerChange logs, at info level, when a replaced file had another owner
// or group than its replacement gets and the block did not ask for that
// change (uid or gid -1): the service that read the old file cannot read the
// new one until a later chown step hands it over. It is a notice, not a
// warning, because write-then-chown is a correct plan. The old ownership is
// deliberately not copied: whoever owned a stray file at the path must not
// come to own a new key.
func noteOwnerChange(log hclog.Logger, path string, old fs.FileInfo, f *os.File, uid, gid int) {
	oldSt, ok1 := old.Sys().(*syscall.Stat_t)
	fi, err := f.Stat()
	if err != nil {
		return
	}
	newSt, ok2 := fi.Sys().(*syscall.Stat_t)
	if !ok1 || !ok2 {
		return
	}
	if (uid != -1 || oldSt.Uid == newSt.Uid) && (gid != -1 || oldSt.Gid == newSt.Gid) {
		return
	}
	log.Info("replaced a file owned by another user or group; it keeps the new owner until a chown (or owner/group in the write block) says otherwise",
		"path", path, "old_uid", oldSt.Uid, "old_gid", oldSt.Gid, "new_uid", newSt.Uid, "new_gid", newSt.Gid)
}

// createTemp creates a new, empty temporary file next to a target named base,
// open for writing, with only the owner bits of mode (group and other bits
// are granted by writeFileAtomic once owner and group are final). O_EXCL and
// O_NOFOLLOW make sure it is a file this call created, not something another
// user planted under a guessed name.
func createTemp(dir, base string, mode os.FileMode) (*os.File, error) {
	// Keep the name within NAME_MAX (255) whatever the target's length.
	if len(base) > 200 {
		base = base[:200]
	}
	var lastErr error
	for range 10 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, err
		}
		name := filepath.Join(dir, "."+base+".rotplan-"+hex.EncodeToString(b[:]))
		f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, mode.Perm()&0o700)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		lastErr = err
	}
	return nil, lastErr
}

// syncDir flushes a directory, which makes a rename in it survive a crash.
// Concurrent writes into one directory each flush it. (Sharing one flush,
// one at a time per directory with late callers waiting for the next, was
// slower: a run writing 500 certificates' files into one directory took
// 2-7 % longer (medians); longer in 20 of 30 interleaved pairs, shorter
// in 6.)
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
