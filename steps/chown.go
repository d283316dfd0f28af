package steps

import (
	"context"
	"fmt"
	"io/fs"
	"os"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Chown is the `chown` step kind: it hands files that are already in place
// (written by an earlier step or by hand) to the user and group of the
// service that reads them.
type Chown struct{}

var _ Step = (*Chown)(nil)

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
	}), nil
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
