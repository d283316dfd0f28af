package steps

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"

	"github.com/rotplan/rotplan/internal/command"
	"github.com/rotplan/rotplan/internal/remote"
	"github.com/zclconf/go-cty/cty"
)

// What a write does when its step has `on`: the same file, written on that
// host through its SSH connection (remote.Conn.WriteFile keeps the local
// promises: never readable by others, flushed, owner and mode set before
// an atomic rename). Owner and group names are looked up there
// (Env.hostOwners), in the run, the resume's intent and the preview alike;
// trust_owner is refused: the checks of the directories on the way are
// remote's own (see its package doc).

// remoteBackupDir is where, beside the file, a write on a host keeps the
// copy of the file it replaces: on the same host, owner-only, so that a
// key never leaves the host for its backup.
const remoteBackupDir = ".rotplan-backups"

// remoteRequest is a write block read for the host c is connected to:
// readWrite's, with owner and group looked up there, and no trust_owner.
func remoteRequest(ctx context.Context, env *Env, c *remote.Conn, cfg Config) (writeRequest, error) {
	return readWriteWith(cfg, remotePath, func(cfg Config) (int, int, error) { return env.hostOwners(ctx, c, cfg) })
}

// intentRemote is Write.Intent on the step's host: the ids of the owner
// and group there.
func intentRemote(ctx context.Context, env *Env, cfg Config) (intent map[string]string, err error) {
	err = env.onHost(ctx, func(c *remote.Conn) error {
		r, err := remoteRequest(ctx, env, c, cfg)
		if err != nil {
			return err
		}
		intent = r.intent()
		return nil
	})
	return intent, err
}

// remotePath is writePath for a host: an absolute path, since a relative
// one would be relative to wherever the SSH server starts the session.
func remotePath(cfg Config) (string, error) {
	p, err := writePath(cfg)
	if err != nil {
		return "", err
	}
	if !path.IsAbs(p) {
		return "", attrErr(cfg.Path("path"), "%q is not an absolute path: a file on a host is named from its root", p)
	}
	if err := refuseTrustOwner(cfg, "write"); err != nil {
		return "", err
	}
	return path.Clean(p), nil
}

// refuseTrustOwner refuses trust_owner in a block of kind for a host:
// there, the checks of the directories on the way are remote's own.
func refuseTrustOwner(cfg Config, kind string) error {
	if cfg.Set("trust_owner") {
		return attrErr(cfg.Path("trust_owner"), "a %s on a host does not take trust_owner: the directories on the way must be writable by root or the SSH user alone", kind)
	}
	return nil
}

// remoteSame reports whether the file fi describes at p already has the
// digest, mode and (where set) owner a write would give it.
func remoteSame(ctx context.Context, c *remote.Conn, p string, fi fs.FileInfo, digest string, size int64, mode os.FileMode, uid, gid int) bool {
	if fi == nil || !fi.Mode().IsRegular() || fi.Size() != size || !remoteMeta(fi, mode, uid, gid) {
		return false
	}
	got, err := c.ReadFile(ctx, p, maxResumeRead)
	return err == nil && contentDigest(got) == digest
}

// remoteMeta is sameMeta for a file described over SFTP.
func remoteMeta(fi fs.FileInfo, mode os.FileMode, uid, gid int) bool {
	if fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky) != mode {
		return false
	}
	fuid, fgid, ok := remote.Owner(fi)
	return ok && (uid == -1 || fuid == uid) && (gid == -1 || fgid == gid)
}

// remoteLstat describes the file at p on the host, nil when there is none.
func remoteLstat(ctx context.Context, c *remote.Conn, p string) (fs.FileInfo, error) {
	fi, err := c.Lstat(ctx, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	return fi, err
}

// checkRemoteTarget is checkWriteTarget on the host: the directory is
// there, and the target is a regular file or absent.
func checkRemoteTarget(ctx context.Context, c *remote.Conn, p string) (fs.FileInfo, error) {
	di, err := c.Lstat(ctx, path.Dir(p))
	switch {
	case err != nil:
		return nil, fmt.Errorf("checking the directory: %w", err)
	case !di.IsDir():
		return nil, fmt.Errorf("%s on %s is %s, not a directory", path.Dir(p), c.Host(), describeFileType(di.Mode()))
	}
	fi, err := remoteLstat(ctx, c, p)
	if err != nil {
		return nil, err
	}
	if fi != nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s on %s is %s; a write replaces only a regular file", p, c.Host(), describeFileType(fi.Mode()))
	}
	return fi, nil
}

// checkHostRemote is Write.CheckHost on the step's host.
func checkHostRemote(ctx context.Context, env *Env, cfg Config) error {
	p, err := remotePath(cfg)
	if err != nil {
		return err
	}
	var ownErr error
	return joinErrors(env.onHost(ctx, func(c *remote.Conn) error {
		_, _, ownErr = env.hostOwners(ctx, c, cfg)
		if _, err := checkRemoteTarget(ctx, c, p); err != nil {
			return &AttrError{Path: cfg.Path("path"), Err: err}
		}
		return nil
	}), ownErr)
}

// applyRemote is Write.Apply on the step's host.
func applyRemote(ctx context.Context, env *Env, cfg Config) (out cty.Value, err error) {
	host, _ := env.Host()
	err = env.onHost(ctx, func(c *remote.Conn) error {
		r, err := remoteRequest(ctx, env, c, cfg)
		if err != nil {
			return err
		}
		digest := contentDigest(r.content)
		out = writeOutputs(r.path, digest, int64(len(r.content)), r.mode)
		fi, err := checkRemoteTarget(ctx, c, r.path)
		if err != nil {
			return fmt.Errorf("writing %s: %w", r.path, err)
		}
		if remoteSame(ctx, c, r.path, fi, digest, int64(len(r.content)), r.mode, r.uid, r.gid) {
			env.NoChange("the file already has this content, mode and owner")
			return nil
		}
		if err := env.Commit(); err != nil {
			return err
		}
		if err := removeRemoteLeftovers(ctx, env, c, r.path); err != nil {
			return fmt.Errorf("writing %s: %w", r.path, err)
		}
		if err := c.WriteFile(ctx, r.path, r.content, r.mode, r.uid, r.gid); err != nil {
			return err
		}
		env.Log.Debug("wrote file", "host", host, "path", r.path, "mode", formatMode(r.mode),
			"owner", describeOwner(cfg.String("owner"), cfg.String("group")),
			"size", len(r.content), "sha256", digest)
		return nil
	})
	if remote.MayBeInPlace(err) {
		// The host may have the new file (its answer to the rename
		// lost, or the flush after it failed): the rollback restores
		// the old one.
		return cty.NilVal, &UnsettledError{Err: err}
	}
	if err != nil {
		return cty.NilVal, err
	}
	return out, nil
}

// planRemote is Write.Plan on the step's host: the file as it is there.
func planRemote(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	pv := Preview{Action: Replace}
	p, err := remotePath(cfg)
	if err != nil {
		if err == ErrUnknown {
			err = nil
		}
		return pv, err
	}
	host, _ := env.Host()
	pv.Now = append(pv.Now, Fact{Name: "host", Value: host})
	mode, modeErr := writeMode(cfg)
	outputs, digest, size := plannedWriteOutputs(cfg, p)
	err = env.onHost(ctx, func(c *remote.Conn) error {
		uid, gid, ownErr := env.hostOwners(ctx, c, cfg)
		if ownErr != nil && ownErr != ErrUnknown {
			pv.Problems = append(pv.Problems, ownErr)
		}
		fi, err := checkRemoteTarget(ctx, c, p)
		if err != nil {
			pv.Problems = append(pv.Problems, attrErr(cfg.Path("path"), "%v", err))
			return nil
		}
		if fi == nil {
			pv.Action = Create
			pv.Now = append(pv.Now, Fact{Name: "file", Value: "does not exist"})
		} else {
			fuid, fgid, _ := remote.Owner(fi)
			pv.Now = append(pv.Now,
				Fact{Name: "mode", Value: formatMode(fi.Mode())},
				Fact{Name: "owner", Value: fmt.Sprintf("%d:%d", fuid, fgid)},
				Fact{Name: "size", Value: strconv.FormatInt(fi.Size(), 10)})
		}
		if size >= 0 && fi != nil && modeErr == nil && ownErr == nil && remoteSame(ctx, c, p, fi, digest, size, mode, uid, gid) {
			pv.Action, pv.Reason = NoChange, "the file already has this content, mode and owner"
		}
		return nil
	})
	if err != nil {
		pv.Problems = append(pv.Problems, err)
	}
	pv.Outputs = cty.ObjectVal(outputs)
	return pv, ctx.Err()
}

// doneRemote is Write.Done on the step's host.
func doneRemote(ctx context.Context, env *Env, intent map[string]string) (out cty.Value, done bool, err error) {
	want, err := parseWriteIntent(intent)
	if err != nil {
		return cty.NilVal, false, err
	}
	host, _ := env.Host()
	notDone := func(why string) error {
		env.Log.Debug("the file is not as the write would leave it", "host", host, "path", want.path, "reason", why)
		return nil
	}
	err = env.onHost(ctx, func(c *remote.Conn) error {
		fi, err := remoteLstat(ctx, c, want.path)
		switch {
		case err != nil:
			return err
		case fi == nil:
			return notDone("missing")
		case !fi.Mode().IsRegular():
			return notDone("not a regular file")
		case !remoteMeta(fi, want.mode, want.uid, want.gid):
			return notDone("mode or owner differs")
		case fi.Size() != want.size:
			return notDone("size differs")
		case fi.Size() > maxResumeRead:
			return notDone("too large to be a key or certificate")
		}
		content, err := c.ReadFile(ctx, want.path, maxResumeRead)
		if err != nil {
			return err
		}
		if contentDigest(content) != want.sha256 {
			return notDone("content differs")
		}
		out, done = writeOutputs(want.path, want.sha256, want.size, want.mode), true
		return nil
	})
	if err != nil {
		return cty.NilVal, false, err
	}
	return out, done, nil
}

// snapshotRemote is Write.Snapshot on the step's host: the copy is kept
// there, beside the file (remoteBackupDir).
func snapshotRemote(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	p, err := remotePath(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	host, _ := env.Host()
	var snap map[string]string
	err = env.onHost(ctx, func(c *remote.Conn) error {
		snap, err = backupRemote(ctx, env, c, p, "writing")
		return err
	})
	if err != nil {
		return nil, err
	}
	snap["host"] = host
	return snap, nil
}

// backupRemote keeps a copy of the file at p on the host, beside it
// (remoteBackupDir), before doing (as in "writing") replaces it, and
// returns what Write's snapshot records of it: path, existed, and for a
// file that is there the copy's path, digest, size, mode and owner.
func backupRemote(ctx context.Context, env *Env, c *remote.Conn, p, doing string) (map[string]string, error) {
	host, _ := env.Host()
	snap := map[string]string{"path": p}
	fi, err := checkRemoteTarget(ctx, c, p)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", doing, p, err)
	}
	if fi == nil {
		snap["existed"] = "false"
		return snap, nil
	}
	saved, err := c.Backup(ctx, p, path.Join(path.Dir(p), remoteBackupDir))
	if err != nil {
		return nil, err
	}
	env.Log.Debug("kept a copy of the file the step replaces", "host", host, "path", p, "backup", saved.Path,
		"sha256", saved.SHA256, "mode", chmodMode(saved.Mode), "uid", saved.UID, "gid", saved.GID)
	snap["existed"] = "true"
	snap["backup"] = saved.Path
	snap["sha256"] = saved.SHA256
	snap["size"] = strconv.FormatInt(saved.Size, 10)
	snap["mode"] = chmodMode(saved.Mode)
	snap["uid"] = strconv.Itoa(saved.UID)
	snap["gid"] = strconv.Itoa(saved.GID)
	return snap, nil
}

// rollbackRemote is Write.Rollback on the step's host.
func rollbackRemote(ctx context.Context, env *Env, snapshot map[string]string) error {
	return restoreRemote(ctx, env, "write", snapshot)
}

// restoreRemote puts back on the step's host the file a snapshot of
// backupRemote's form describes, or removes the file when there was none;
// kind names the step kind in errors ("write: rolling back").
func restoreRemote(ctx context.Context, env *Env, kind string, snapshot map[string]string) error {
	host, _ := env.Host()
	p, err := snapshotField(snapshot, "path")
	if err != nil || !path.IsAbs(p) {
		return fmt.Errorf("%s: rolling back on %s: the journaled snapshot's path %q is not an absolute path", kind, host, p)
	}
	existed, err := snapshotField(snapshot, "existed")
	if err != nil {
		return fmt.Errorf("%s: rolling back %s on %s: %w", kind, p, host, err)
	}
	if existed == "false" {
		return env.onHost(ctx, func(c *remote.Conn) error {
			if err := removeRemoteLeftovers(ctx, env, c, p); err != nil {
				return fmt.Errorf("%s: rolling back %s on %s, which did not exist before: %w; remove it by hand: rm %s", kind, p, host, err, command.ShellWord(p))
			}
			err := c.Remove(ctx, p)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				env.Log.Info("the file the step created is already gone", "host", host, "path", p)
				return nil
			case err != nil:
				return fmt.Errorf("%s: rolling back %s on %s, which did not exist before: %w; check it, and remove it by hand if it should not be there: rm %s", kind, p, host, err, command.ShellWord(p))
			}
			env.Log.Info("removed the file the step created", "host", host, "path", p)
			return nil
		})
	}
	saved, err := parseRemoteSaved(snapshot)
	if err != nil {
		return fmt.Errorf("%s: rolling back %s on %s: %w", kind, p, host, err)
	}
	return env.onHost(ctx, func(c *remote.Conn) error {
		if err := removeRemoteLeftovers(ctx, env, c, p); err != nil {
			return fmt.Errorf("%s: rolling back %s on %s: %w", kind, p, host, err)
		}
		if err := c.Restore(ctx, saved, p); err != nil {
			return fmt.Errorf("%s: rolling back %s: %w; the backup is kept on the host: install -m %s -o %d -g %d %s %s",
				kind, p, err, chmodMode(saved.Mode), saved.UID, saved.GID, command.ShellWord(saved.Path), command.ShellWord(p))
		}
		env.Log.Info("restored the file the step replaced", "host", host, "path", p, "mode", chmodMode(saved.Mode),
			"owner", fmt.Sprintf("%d:%d", saved.UID, saved.GID), "sha256", saved.SHA256, "backup", saved.Path)
		return nil
	})
}

// removeRemoteLeftovers removes the temporary files that writes of p cut
// short (rotplan killed, the host lost mid-write) left beside it on the
// host: owner-only, but they may hold a key, and their names are random,
// so no later write reuses one.
func removeRemoteLeftovers(ctx context.Context, env *Env, c *remote.Conn, p string) error {
	removed, err := c.RemoveLeftovers(ctx, p)
	host, _ := env.Host()
	for _, q := range removed {
		env.Log.Info("removed the temporary file a write that was cut short left", "host", host, "path", q)
	}
	return err
}

// parseRemoteSaved reads back the copy a snapshot on a host recorded.
func parseRemoteSaved(snapshot map[string]string) (remote.Saved, error) {
	var s remote.Saved
	var err error
	if s.Path, s.SHA256, s.Mode, s.UID, s.GID, err = parseSavedCopy(snapshot); err != nil {
		return s, err
	}
	size, err := snapshotField(snapshot, "size")
	if err != nil {
		return s, err
	}
	if s.Size, err = strconv.ParseInt(size, 10, 64); err != nil || s.Size < 0 || !isDigits(size) {
		return s, fmt.Errorf("the journaled snapshot's size %q is not a byte count", size)
	}
	return s, nil
}
