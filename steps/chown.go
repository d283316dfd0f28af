package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Chown is the `chown` step kind: it hands files that are already in place
// (written by an earlier step or by hand) to the user and group of the
// service that reads them.
type Chown struct{}

var (
	_ Step       = (*Chown)(nil)
	_ Resumer    = (*Chown)(nil)
	_ Summarizer = (*Chown)(nil)
)

// Spec is the schema of a chown block.
func (*Chown) Spec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"paths": &hcldec.AttrSpec{Name: "paths", Type: cty.List(cty.String), Required: true},
		"owner": &hcldec.AttrSpec{Name: "owner", Type: cty.String},
		"group": &hcldec.AttrSpec{Name: "group", Type: cty.String},
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

// Validate checks the owner and group and the list of paths. The files
// themselves are not looked at: an earlier step of the run may create them.
func (*Chown) Validate(cfg Config) error {
	_, pathsErr := chownPaths(cfg)
	_, _, ownErr := chownOwnership(cfg)
	return joinErrors(pathsErr, ownErr)
}

// Apply changes the owner and group of every path and returns them.
func (*Chown) Apply(ctx context.Context, env *Env, cfg Config) (cty.Value, error) {
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
	// Check every path before changing any, so a typo in the last one does
	// not leave the first ones changed.
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return cty.NilVal, fmt.Errorf("chown %s: %w", p, err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return cty.NilVal, fmt.Errorf("chown %s: it is a symbolic link; refusing to change it (give the path it points to instead)", p)
		}
	}
	for _, p := range paths {
		// Lchown: if p was swapped for a symlink since the check above, the
		// link changes owner, never what it points to.
		if err := os.Lchown(p, uid, gid); err != nil {
			return cty.NilVal, fmt.Errorf("chown %s: %w", p, err)
		}
		env.Log.Debug("changed owner", "path", p, "owner", describeOwner(cfg.String("owner"), cfg.String("group")), "uid", uid, "gid", gid)
	}

	return chownOutputs(paths, uid, gid), nil
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
func (*Chown) Intent(cfg Config) (map[string]string, error) {
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
	return map[string]string{
		"paths": string(list),
		"uid":   strconv.Itoa(uid),
		"gid":   strconv.Itoa(gid),
	}, nil
}

// Done implements Resumer. The chown is done when every path has the
// intended owner and group. A path that is now a symbolic link is not done,
// whoever owns the link: Apply refuses links, so running it again reports
// the link rather than a resume passing over it.
func (*Chown) Done(ctx context.Context, env *Env, intent map[string]string) (cty.Value, bool, error) {
	if err := ctx.Err(); err != nil {
		return cty.NilVal, false, err
	}
	paths, uid, gid, err := parseChownIntent(intent)
	if err != nil {
		return cty.NilVal, false, err
	}
	for _, p := range paths {
		fi, err := os.Lstat(p)
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
