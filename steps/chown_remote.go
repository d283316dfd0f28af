package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strconv"
	"strings"

	"github.com/rotplan/rotplan/internal/command"
	"github.com/rotplan/rotplan/internal/remote"
	"github.com/zclconf/go-cty/cty"
)

// What a chown does when its step has `on`: the same paths, handed over
// on that host through its SSH connection. The checks are the local ones
// made there (remote.Conn.OwnTarget: no symbolic link on the way or at
// the path, no file with other hard links), the change is chown -h on the
// host (remote.Conn.Chown). Owner and group names are looked up there
// (Env.hostOwners); trust_owner is refused, as for a write on a host.

// remoteChownPaths is chownPaths for a host: absolute, clean paths, and
// no trust_owner.
func remoteChownPaths(cfg Config) ([]string, error) {
	paths, err := chownPaths(cfg)
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		if !path.IsAbs(p) || path.Clean(p) != p {
			return nil, attrErr(cfg.Path("paths"), "%q is not an absolute, clean path: a file on a host is named from its root", p)
		}
	}
	return paths, refuseTrustOwner(cfg, "chown")
}

// remoteChownOwnership is chownOwnership on the host c is connected to.
func remoteChownOwnership(ctx context.Context, env *Env, c *remote.Conn, cfg Config) (uid, gid int, err error) {
	if !cfg.Set("owner") && !cfg.Set("group") {
		return -1, -1, attrErr(cfg.Path("owner"), "give owner, group or both")
	}
	return env.hostOwners(ctx, c, cfg)
}

// intentChownRemote is Chown.Intent on the step's host: the ids there.
func intentChownRemote(ctx context.Context, env *Env, cfg Config) (intent map[string]string, err error) {
	paths, err := remoteChownPaths(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	err = env.onHost(ctx, func(c *remote.Conn) error {
		uid, gid, err := remoteChownOwnership(ctx, env, c, cfg)
		if err != nil {
			return mustBeKnown(err)
		}
		list, err := json.Marshal(paths)
		intent = map[string]string{"paths": string(list), "uid": strconv.Itoa(uid), "gid": strconv.Itoa(gid)}
		return err
	})
	return intent, err
}

// checkChownRemote is Chown.CheckHost on the step's host: the ids, and
// the directories the paths are in. The files themselves are not looked
// at: an earlier step may write them.
func checkChownRemote(ctx context.Context, env *Env, cfg Config) error {
	paths, err := remoteChownPaths(cfg)
	if err != nil {
		return err
	}
	var ownErr error
	return joinErrors(env.onHost(ctx, func(c *remote.Conn) error {
		_, _, ownErr = remoteChownOwnership(ctx, env, c, cfg)
		return checkEachDir(cfg, paths, path.Dir, func(dir string) error { return remoteDirThere(ctx, c, dir) })
	}), ownErr)
}

// remoteDirThere reports a directory on the host that is missing or is
// something else.
func remoteDirThere(ctx context.Context, c *remote.Conn, dir string) error {
	di, err := c.Lstat(ctx, dir)
	switch {
	case err != nil:
		return fmt.Errorf("directory %s on %s: %w", dir, c.Host(), err)
	case !di.IsDir():
		return fmt.Errorf("%s on %s is %s, not a directory", dir, c.Host(), describeFileType(di.Mode()))
	}
	return nil
}

// applyChownRemote is Chown.Apply on the step's host: every path checked
// before any changes, as locally.
func applyChownRemote(ctx context.Context, env *Env, cfg Config) (out cty.Value, err error) {
	paths, err := remoteChownPaths(cfg)
	if err != nil {
		return cty.NilVal, mustBeKnown(err)
	}
	host, _ := env.Host()
	uid, gid := -1, -1
	asked := 0 // the chowns asked of the host, the last one failing if err
	err = env.onHost(ctx, func(c *remote.Conn) error {
		if uid, gid, err = remoteChownOwnership(ctx, env, c, cfg); err != nil {
			return mustBeKnown(err)
		}
		for _, p := range paths {
			if _, err := c.OwnTarget(ctx, p); err != nil {
				return fmt.Errorf("chown: %w", err)
			}
		}
		for i, p := range paths {
			asked = i + 1
			if err := c.Chown(ctx, p, uid, gid); err != nil {
				return err
			}
			env.Log.Debug("changed owner", "host", host, "path", p, "uid", uid, "gid", gid)
		}
		return nil
	})
	var lost *remote.LostError
	switch {
	case err == nil:
		return chownOutputs(paths, uid, gid), nil
	case asked > 1 || asked == 1 && errors.As(err, &lost):
		// An earlier path has its new owner, or the host may have
		// carried out the chown whose answer was lost.
		return cty.NilVal, &UnsettledError{Err: err}
	}
	return cty.NilVal, err
}

// planChownRemote is Chown.Plan on the step's host: whom each path
// belongs to there now.
func planChownRemote(ctx context.Context, env *Env, cfg Config) (Preview, error) {
	pv := Preview{Action: NoChange, Reason: "every path already has this owner"}
	paths, err := remoteChownPaths(cfg)
	refused := func(errs ...error) {
		pv.Action, pv.Reason = Replace, ""
		for _, e := range errs {
			if e != nil && e != ErrUnknown {
				pv.Problems = append(pv.Problems, e)
			}
		}
	}
	if err != nil {
		refused(err)
		return pv, ctx.Err()
	}
	host, _ := env.Host()
	pv.Now = append(pv.Now, Fact{Name: "host", Value: host})
	var observed []string
	uid, gid := -1, -1
	var ownErr error
	err = env.onHost(ctx, func(c *remote.Conn) error {
		if uid, gid, ownErr = remoteChownOwnership(ctx, env, c, cfg); ownErr != nil {
			refused(ownErr)
			return nil
		}
		for _, p := range paths {
			fi, err := c.OwnTarget(ctx, p)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				pv.Action, pv.Reason = Replace, ""
				pv.Now = append(pv.Now, Fact{Name: p, Value: "not there now (an earlier step must write it)"})
				observed = append(observed, p+": absent")
				continue
			case err != nil:
				pv.Problems = append(pv.Problems, attrErr(cfg.Path("paths"), "%v", err))
				continue
			}
			fuid, fgid, _ := remote.Owner(fi)
			pv.Now = append(pv.Now, Fact{Name: p, Value: fmt.Sprintf("%s, owner %d:%d", describeFileType(fi.Mode()), fuid, fgid)})
			observed = append(observed, fmt.Sprintf("%s: %d:%d", p, fuid, fgid))
			if (uid != -1 && fuid != uid) || (gid != -1 && fgid != gid) {
				pv.Action, pv.Reason = Replace, ""
			}
		}
		return nil
	})
	if err != nil {
		pv.Problems = append(pv.Problems, err)
	}
	if ownErr == nil {
		pv.Outputs = chownOutputs(paths, uid, gid)
	}
	pv.Observed = strings.Join(observed, "; ")
	return pv, ctx.Err()
}

// snapshotChownRemote is Chown.Snapshot on the step's host: the owners
// there, in the local snapshot's form, and the host.
func snapshotChownRemote(ctx context.Context, env *Env, cfg Config) (map[string]string, error) {
	paths, err := remoteChownPaths(cfg)
	if err != nil {
		return nil, mustBeKnown(err)
	}
	host, _ := env.Host()
	owners := make([]chownOwner, 0, len(paths))
	err = env.onHost(ctx, func(c *remote.Conn) error {
		for _, p := range paths {
			fi, err := c.OwnTarget(ctx, p)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				owners = append(owners, chownOwner{Path: p, Missing: true})
				continue
			case err != nil:
				return fmt.Errorf("chown: %w", err)
			}
			uid, gid, ok := remote.Owner(fi)
			if !ok {
				return fmt.Errorf("chown %s on %s: the SFTP server gave no owner", p, host)
			}
			owners = append(owners, chownOwner{Path: p, UID: &uid, GID: &gid})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	list, err := json.Marshal(owners)
	if err != nil {
		return nil, err
	}
	return map[string]string{"owners": string(list), "host": host}, nil
}

// rollbackChownRemote is Chown.Rollback on the step's host: every path
// the snapshot found gets its owner back, through the same checks as
// Apply; it goes on past a path it cannot restore.
func rollbackChownRemote(ctx context.Context, env *Env, snapshot map[string]string) error {
	owners, err := parseChownSnapshot(snapshot)
	if err != nil {
		return err
	}
	host, _ := env.Host()
	var errs []error
	err = env.onHost(ctx, func(c *remote.Conn) error {
		for _, o := range owners {
			if o.Missing {
				env.Log.Debug("left as it is: it did not exist before the chown", "host", host, "path", o.Path)
				continue
			}
			uid, gid := *o.UID, *o.GID
			fi, err := c.OwnTarget(ctx, o.Path)
			if errors.Is(err, fs.ErrNotExist) {
				env.Log.Warn("no owner to restore: the file is gone", "host", host, "path", o.Path, "uid", uid, "gid", gid)
				continue
			}
			if nowUID, nowGID, ok := remoteOwner(fi, err); ok && nowUID == uid && nowGID == gid {
				// Never changed (a chown that failed part way), or given back.
				env.Log.Debug("already has its old owner", "host", host, "path", o.Path, "uid", uid, "gid", gid)
				continue
			}
			if err == nil {
				err = c.Chown(ctx, o.Path, uid, gid)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("chown: rolling back %s on %s: %w; run by hand there: chown -h %d:%d %s", o.Path, host, err, uid, gid, command.ShellWord(o.Path)))
				continue
			}
			env.Log.Info("restored owner", "host", host, "path", o.Path, "uid", uid, "gid", gid)
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// doneChownRemote is Chown.Done on the step's host.
func doneChownRemote(ctx context.Context, env *Env, intent map[string]string) (out cty.Value, done bool, err error) {
	paths, uid, gid, err := parseChownIntent(intent)
	if err != nil {
		return cty.NilVal, false, err
	}
	host, _ := env.Host()
	err = env.onHost(ctx, func(c *remote.Conn) error {
		for _, p := range paths {
			fi, err := c.Lstat(ctx, p)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				env.Log.Debug("chown not done: missing", "host", host, "path", p)
				return nil
			case err != nil:
				return err
			case fi.Mode()&fs.ModeSymlink != 0:
				env.Log.Debug("chown not done: a symbolic link", "host", host, "path", p)
				return nil
			}
			fuid, fgid, ok := remote.Owner(fi)
			if !ok || (uid != -1 && fuid != uid) || (gid != -1 && fgid != gid) {
				env.Log.Debug("chown not done", "host", host, "path", p, "uid", fuid, "gid", fgid)
				return nil
			}
		}
		out, done = chownOutputs(paths, uid, gid), true
		return nil
	})
	if err != nil {
		return cty.NilVal, false, err
	}
	return out, done, nil
}

// remoteOwner is the owner of fi, from OwnTarget, when it found one.
func remoteOwner(fi fs.FileInfo, err error) (uid, gid int, ok bool) {
	if err != nil || fi == nil {
		return 0, 0, false
	}
	return remote.Owner(fi)
}
