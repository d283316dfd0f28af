package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rotplan/rotplan/internal/testhosts"
)

// hostKindsPlan writes a key on every web host, hands it and the
// certificate already there to the service's ids, runs the service's
// configuration test there, and reloads the service (a command that counts its runs in a file on the host); a
// check here, where rotplan runs, then passes or fails.
const hostKindsPlan = webHosts + `

write "key" {
  for_each = var.web
  on       = host.web[each.key]
  path     = "${each.value.dir}/app.key"
  content  = "key-${each.key}\n"
  mode     = "0640"
}

chown "tls" {
  for_each = var.web
  on       = host.web[each.key]
  paths    = [write.key[each.key].path, "${each.value.dir}/app.crt"]
  owner    = "4242"
  group    = "4343"
}

verify "conf" {
  for_each   = var.web
  on         = host.web[each.key]
  depends_on = [chown.tls]
  command {
    # The service's configuration test, on the host: the key is there.
    argv = ["test", "-f", "${each.value.dir}/app.key"]
  }
}

reload "app" {
  for_each   = var.web
  on         = host.web[each.key]
  command    = ["sh", "-c", "echo reloaded >> \"$1\"", "sh", "${each.value.dir}/reloads"]
  depends_on = [verify.conf]
}

verify "after" {
  depends_on = [reload.app]
  command {
    argv = [var.fail ? "/bin/false" : "/bin/true"]
  }
}
`

// TestWriteChownReloadOnHosts runs the rotplan binary in the controller
// of a bed of real sshd hosts: per host a write, a chown, a command
// check and a reload, over SSH, checked from outside through ssh. A failing later step rolls
// every host back: the key removed, the certificate's owner restored,
// the service reloaded again.
func TestWriteChownReloadOnHosts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the chown gives files to other users, which needs root")
	}
	f := testhosts.Start(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	var web []string
	for _, h := range f.Hosts {
		// The hosts share the machine's file system: each works in a
		// directory of its own, holding a certificate owned 1001:1002.
		crt := filepath.Join(h.Home, "app.crt")
		if err := os.WriteFile(crt, []byte("cert-"+h.Name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(crt, 1001, 1002); err != nil {
			t.Fatal(err)
		}
		web = append(web, fmt.Sprintf("%s = { address = %q, port = %d, dir = %q }", h.Name, h.Addr, h.Port, h.Home))
	}
	dir := planDir(t, hostKindsPlan, nil)
	run := func(fail bool) result {
		t.Helper()
		vars := fmt.Sprintf("web = { %s }\nknown_hosts = %q\nidentity = %q\nfail = %t\n",
			strings.Join(web, ", "), f.KnownHosts, f.ClientKey, fail)
		if err := os.WriteFile(filepath.Join(dir, "vars.hcl"), []byte(vars), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := f.Controller.Command(ctx, rotplanBin, "run", "-var-file", "vars.hcl", "plan.hcl")
		cmd.Dir = dir
		cmd.Env = cleanEnv()
		return runCmd(t, cmd, 3*time.Minute)
	}
	// state asks the host, over ssh from the controller, for the owners
	// of the key and the certificate, and how often the service reloaded.
	state := func(h *testhosts.Host) string {
		t.Helper()
		script := fmt.Sprintf(`cd %s && for f in app.key app.crt; do if test -e $f; then stat -c "$f %%u:%%g" $f; else echo "$f none"; fi; done; echo "reloads $(cat reloads 2>/dev/null | wc -l)"`, h.Home)
		out, err := f.Controller.Command(ctx, "ssh", "-F", f.SSHConfig, h.Name, script).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh %s: %v\n%s", h.Name, err, out)
		}
		return string(out)
	}
	want := func(when, wantState string) {
		t.Helper()
		for _, h := range f.Hosts {
			if got := state(h); got != wantState {
				t.Errorf("%s: %s: %q, want %q", h.Name, when, got, wantState)
			}
		}
	}

	// 1. The check fails: the key is removed, the certificate is
	// 1001:1002 again, and the service reloaded twice (the run's reload
	// and the rollback's).
	res := run(true)
	if res.exit != 3 {
		t.Fatalf("failing run: exit %d, want 3 (rolled back)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	want("after the rollback", "app.key none\napp.crt 1001:1002\nreloads 2\n")

	// 2. It passes: both files are the service's, reloaded once more.
	res = run(false)
	if res.exit != 0 {
		t.Fatalf("run: exit %d\n%s%s", res.exit, res.stdout, res.stderr)
	}
	want("after the run", "app.key 4242:4343\napp.crt 4242:4343\nreloads 3\n")
}
