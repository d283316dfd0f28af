package testvault

import (
	"fmt"
	"path/filepath"
	"strings"
)

// NginxMain is what every nginx the harnesses run has in common (the edge
// proxy here, the web fleet of internal/testweb): a master in the
// foreground, supervised by the harness, workers as User, and every file
// nginx writes below the harness's directories rather than the package's
// defaults under /var.
type NginxMain struct {
	Comment   string // the first line, after "# "
	User      string // the workers' user
	Group     string // and group
	PIDFile   string // written by nginx: the master's pid
	ErrorLog  string
	AccessLog string
	TempDir   string // below it, one directory per kind of temporary file
}

// NginxConfig returns a whole nginx configuration: m's settings, then an
// http block holding servers (server blocks, indented by four spaces, as
// the caller writes them). A path nginx could not read as written is an
// error.
func NginxConfig(m NginxMain, servers string) (string, error) {
	temps := []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"}
	paths := map[string]string{"pid": m.PIDFile, "error": m.ErrorLog, "access": m.AccessLog}
	for _, t := range temps {
		paths["tmp-"+t] = filepath.Join(m.TempDir, t)
	}
	q := map[string]string{}
	for k, path := range paths {
		s, err := NginxQuote(path)
		if err != nil {
			return "", err
		}
		q[k] = s
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# %s", m.Comment)
	w("daemon off;")
	w("master_process on;")
	w("user %s %s;", m.User, m.Group)
	w("worker_processes 1;")
	w("pid %s;", q["pid"])
	w("error_log %s info;", q["error"])
	w("events {\n    worker_connections 128;\n}")
	w("http {")
	w("    access_log %s;", q["access"])
	for _, t := range temps {
		dir := t
		if t == "body" {
			dir = "client_body"
		}
		w("    %s_temp_path %s;", dir, q["tmp-"+t])
	}
	w("    default_type text/plain;")
	w("    ssl_protocols TLSv1.2 TLSv1.3;")
	b.WriteString(servers)
	w("}")
	return b.String(), nil
}

// NginxQuote quotes s for nginx's configuration, refusing what would need
// escaping there.
func NginxQuote(s string) (string, error) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || strings.ContainsRune("\"'\\$;{}", r) {
			return "", fmt.Errorf("path %q contains characters not supported in the nginx configuration", s)
		}
	}
	return `"` + s + `"`, nil
}
