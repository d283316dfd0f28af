package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// version is rotplan's version, set at build time with
// -ldflags "-X main.version=..." (make build sets `git describe`). A
// binary built without it takes the module version `go install` records,
// else "dev".
var version = ""

// buildInfo is what a binary knows of how it was built: its version, the
// commit and whether the tree had changes (recorded by the go command in
// a git checkout), the commit's time, and the Go that built it.
type buildInfo struct {
	version, commit, commitTime string
	modified                    bool
	goVersion                   string
}

// readBuildInfo reads the binary's build information.
func readBuildInfo() buildInfo {
	b := buildInfo{version: version, goVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if ok {
		if b.version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.version = info.Main.Version
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.commit = s.Value
			case "vcs.time":
				b.commitTime = s.Value
			case "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
	}
	if b.version == "" {
		b.version = "dev"
	}
	return b
}

// short is the version and commit in a few words, for the journal and
// logs: "v1.2.0 (a1b2c3d4e5f6)", "dev (a1b2c3d4e5f6, modified)".
func (b buildInfo) short() string {
	if b.commit == "" {
		return b.version
	}
	commit := b.commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if b.modified {
		commit += ", modified"
	}
	return fmt.Sprintf("%s (%s)", b.version, commit)
}

// String is what `rotplan version` prints.
func (b buildInfo) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "rotplan %s\n", b.version)
	if b.commit != "" {
		fmt.Fprintf(&s, "commit %s", b.commit)
		if b.modified {
			s.WriteString(" (with uncommitted changes)")
		}
		if b.commitTime != "" {
			fmt.Fprintf(&s, ", %s", b.commitTime)
		}
		s.WriteString("\n")
	}
	fmt.Fprintf(&s, "built with %s %s/%s\n", b.goVersion, runtime.GOOS, runtime.GOARCH)
	return s.String()
}
