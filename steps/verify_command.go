package steps

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/rotplan/rotplan/internal/command"
	"github.com/rotplan/rotplan/internal/remote"
	"github.com/zclconf/go-cty/cty"
)

// A command check runs a service's own configuration test before the
// reload that would load the configuration:
//
//	verify "nginx_conf" {
//	  depends_on = [write.fullchain]
//	  command {
//	    argv = ["nginx", "-t", "-c", "/etc/nginx/nginx.conf"]
//	  }
//	}
//	reload "nginx" {
//	  depends_on = [verify.nginx_conf]
//	  ...
//	}
//
// It runs argv without a shell, within the step's timeout, and passes
// when the command exits with status 0. A failure shows the exit status
// and the end of the command's output (internal/command), so the
// operator sees why `nginx -t` refused; it is not retried, as a
// configuration on disk does not change by waiting, and the run stops
// before the reload and rolls back. The check is read-only as far as
// rotplan knows: the plan's author vouches that the command changes
// nothing. Sensitive values are refused in argv: they would show on a
// command line and in the error.
type commandCheck struct {
	argv []string
}

var (
	_ check       = commandCheck{}
	_ graced      = commandCheck{}
	_ unattempted = commandCheck{}
)

// commandSpec is the schema of a command block.
func commandSpec() hcldec.ObjectSpec {
	return hcldec.ObjectSpec{
		"argv": &hcldec.AttrSpec{Name: "argv", Type: cty.List(cty.String), Required: true},
	}
}

// parseCommand reads a command block.
func parseCommand(c Config) (check, []error) {
	argv, err := c.StringList("argv")
	if err != nil {
		return commandCheck{}, []error{err}
	}
	var errs []error
	switch {
	case c.Sensitive("argv"):
		errs = append(errs, attrErr(c.Path("argv"), "must not use sensitive values: they would show on a command line and in the error when the command fails"))
	case len(argv) == 0:
		errs = append(errs, attrErr(c.Path("argv"), "must not be empty: give the program and its arguments, as in [\"nginx\", \"-t\"]"))
	case argv[0] == "":
		errs = append(errs, attrErr(c.Path("argv"), "the program name (the first element) must not be empty"))
	}
	return commandCheck{argv: argv}, errs
}

// target implements check: the program alone, as the error of a failed
// command quotes it all.
func (c commandCheck) target() string {
	if len(c.argv) == 0 {
		return ""
	}
	return c.argv[0]
}

// nowFact implements check; a preview never runs the command.
func (commandCheck) nowFact(checkResult) string { return "" }

// grace implements graced.
func (commandCheck) grace() time.Duration { return commandGrace }

// previewProblem implements unattempted: the preview runs nothing, it
// only looks for the program (on the step's host, for a step with on).
func (c commandCheck) previewProblem(ctx context.Context, env *Env) error {
	if _, ok := env.Host(); ok {
		return c.lookPathOnHost(ctx, env)
	}
	return c.lookPath()
}

// attempt runs the command once, on the step's host for a step with on.
// Every failure is an inputError at argv: a test of a configuration on
// disk fails the same way on every attempt.
func (c commandCheck) attempt(ctx context.Context, env *Env, timeout time.Duration) (checkResult, error) {
	if _, ok := env.Host(); ok {
		return c.attemptOnHost(ctx, env, timeout)
	}
	if err := c.lookPath(); err != nil {
		return checkResult{}, err
	}
	if _, err := command.Run(ctx, c.argv, timeout); err != nil {
		if ctx.Err() != nil {
			return checkResult{}, err // interrupted: not a verdict on the configuration
		}
		return checkResult{}, &inputError{arg: "argv", err: err}
	}
	return checkResult{}, nil
}

// commandGrace is how long a command check's step outlives the command's
// own time limit, so that the limit, not the step's deadline, stops it,
// and the error says it timed out rather than that it was interrupted.
const commandGrace = 10 * time.Second

// lookPath reports a program the command check cannot find: a
// diagnostic at argv in the run, and a problem in the preview, which
// does not run the command.
func (c commandCheck) lookPath() error {
	if len(c.argv) == 0 {
		return nil
	}
	if _, err := exec.LookPath(c.argv[0]); err != nil {
		return &inputError{arg: "argv", err: fmt.Errorf("cannot run %s: %w", c.argv[0], command.Plain(err))}
	}
	return nil
}

// lookPathOnHost is lookPath on the step's host.
func (c commandCheck) lookPathOnHost(ctx context.Context, env *Env) error {
	if len(c.argv) == 0 {
		return nil
	}
	return env.onHost(ctx, func(conn *remote.Conn) error {
		if err := remoteLookPath(ctx, conn, c.argv[0]); err != nil {
			return &inputError{arg: "argv", err: err}
		}
		return nil
	})
}

// attemptOnHost is attempt on the step's host: the command runs there
// through its SSH connection (remote.Conn.Run: the exit status and the
// end of its standard error in the error), within timeout.
func (c commandCheck) attemptOnHost(ctx context.Context, env *Env, timeout time.Duration) (checkResult, error) {
	if err := c.lookPathOnHost(ctx, env); err != nil {
		return checkResult{}, err
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := env.onHost(rctx, func(conn *remote.Conn) error {
		_, err := conn.Run(rctx, c.argv)
		if err != nil && rctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("command %s on %s timed out after %s", command.Quote(c.argv), conn.Host(), timeout)
		}
		return err
	})
	switch {
	case err == nil:
		return checkResult{}, nil
	case ctx.Err() != nil:
		return checkResult{}, err // interrupted: not a verdict on the configuration
	}
	return checkResult{}, &inputError{arg: "argv", err: err}
}
