package main

import (
	"flag"
	"strings"
)

// listFlag collects a repeatable flag.
type listFlag []string

// String implements flag.Value.
func (l *listFlag) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value: each use of the flag adds a value.
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parseFlags parses args as fs.Parse does, except that options may also
// come after the plan file (rotplan run prod.hcl -var x=1), as operators
// type them when they edit the last command. "--" ends the options; what
// follows it is positional even if it starts with "-". The positional
// arguments are then fs.Args().
func parseFlags(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		// flag stops at "--" and removes it; anything after a "--" stays
		// positional.
		if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	// Parse once more with nothing but the positional arguments after a
	// "--", so that fs.Args() returns them.
	return fs.Parse(append([]string{"--"}, positional...))
}
