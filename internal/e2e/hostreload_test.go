package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// reloadLostPlan writes a key on every web host and reloads the host's
// "service" after it: a command that loads the key (appends its SHA-256
// to loaded.log beside it) and, on the host var.hold names, then holds
// until the test releases it (a file "release"), so that the test can cut
// the host off while its reload is under way.
const reloadLostPlan = webHosts + keyOnHosts + `
variable "hold" { default = "" }

reload "app" {
  for_each   = var.web
  on         = host.web[each.key]
  depends_on = [write.key[each.key]]
  timeout    = "2m"
  command    = ["sh", "-c", <<-EOT
      sha256sum < "$3/app.key" | cut -c1-64 >> "$3/loaded.log"
      if [ "$1" = "$2" ] && [ ! -e "$3/release" ]; then
        : > "$3/held"
        while [ ! -e "$3/release" ]; do sleep 0.05; done
      fi
      EOT
  , "reload", each.key, var.hold, each.value.dir]
}

rollout "web" {
  hosts      = host.web
  batch_size = 2
}
`

// TestReloadLostOnHost cuts h3 off while its reload runs there: the
// reload did load the new key on the host, but rotplan never heard back.
// The run fails and cannot reach h3 to undo (exit 4); once h3 is back,
// resume restores its key and reloads it again, so that its service has
// the key it finds on disk, as every other host's has. Checked from
// outside: each host's key and the key its service loaded last.
func TestReloadLostOnHost(t *testing.T) {
	r := newFailRunOf(t, reloadLostPlan, "reload-lost-secret")
	h3 := r.f.Host("h3")
	res, _ := r.cutWhileHeld(t, h3, h3, 0)
	if res.exit != 4 {
		t.Fatalf("run with h3 cut off in its reload: exit %d, want 4 (h3 cannot be rolled back)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "Still to undo") || !strings.Contains(res.stdout, `reload.app["h3"]`) || !strings.Contains(res.stdout, `write.key["h3"]`) {
		t.Errorf("the report does not leave h3's write and reload to undo:\n%s%s", res.stdout, res.stderr)
	}
	if err := h3.Restore(r.ctx); err != nil {
		t.Fatal(err)
	}
	res = r.rotplan(t, "resume")
	if res.exit != 3 {
		t.Fatalf("resume of the rollback: exit %d, want 3 (rolled back)\n%s%s", res.exit, res.stdout, res.stderr)
	}
	noSecretIn(t, res, r.dir, r.secret)
	r.want(t, "after the resumed rollback,", oldKey)
	for _, h := range r.f.Hosts {
		key, err := os.ReadFile(filepath.Join(h.Home, "app.key"))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(key)
		log, err := os.ReadFile(filepath.Join(h.Home, "loaded.log"))
		if err != nil {
			t.Errorf("%s: its service was never reloaded: %v", h.Name, err)
			continue
		}
		lines := strings.Fields(string(log))
		if last := lines[len(lines)-1]; last != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: its service last loaded the key with SHA-256 %s, not the one on disk (loads: %v)", h.Name, last, lines)
		}
	}
}
