package command

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name      string
		argv      []string
		timeout   time.Duration
		interrupt time.Duration // > 0: ctx is cancelled after that long
		wantErr   []string      // nil: success
		maxTime   time.Duration
	}{
		{name: "success", argv: []string{"/bin/echo", "reloaded fine"}, timeout: 10 * time.Second, maxTime: 10 * time.Second},
		{name: "success without output", argv: []string{"true"}, timeout: 10 * time.Second, maxTime: 10 * time.Second},
		{
			name: "failure exit code", argv: []string{"/bin/sh", "-c", "echo it broke >&2; exit 7"}, timeout: 10 * time.Second,
			wantErr: []string{"command /bin/sh -c", "failed: exit status 7", "it broke"}, maxTime: 10 * time.Second,
		},
		{
			name: "timeout", argv: []string{"/bin/sh", "-c", "echo started; sleep 30"}, timeout: 200 * time.Millisecond,
			wantErr: []string{"timed out after 200ms", "started"}, maxTime: 4 * time.Second,
		},
		{
			name: "long output keeps its end", argv: []string{"/bin/sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo noise $i; i=$((i+1)); done; echo the real reason; exit 1"},
			timeout: 10 * time.Second, wantErr: []string{"the real reason", "[…]"}, maxTime: 10 * time.Second,
		},
		{
			name: "interrupted", argv: []string{"/bin/sleep", "30"}, timeout: 10 * time.Second, interrupt: 200 * time.Millisecond,
			wantErr: []string{"interrupted"}, maxTime: 4 * time.Second,
		},
		{name: "program missing", argv: []string{"/nonexistent/hook"}, timeout: time.Second, wantErr: []string{"/nonexistent/hook", "no such file"}, maxTime: 4 * time.Second},
		{name: "empty argv", argv: nil, timeout: time.Second, wantErr: []string{"no command to run"}, maxTime: time.Second},
		{name: "empty program name", argv: []string{""}, timeout: time.Second, wantErr: []string{"no command to run"}, maxTime: time.Second},
		{name: "no time limit", argv: []string{"true"}, timeout: 0, wantErr: []string{"time limit 0s is not positive"}, maxTime: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.interrupt > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				time.AfterFunc(tt.interrupt, cancel)
			}
			start := time.Now()
			_, err := Run(ctx, tt.argv, tt.timeout)
			if elapsed := time.Since(start); elapsed > tt.maxTime {
				t.Errorf("took %s, want at most %s", elapsed, tt.maxTime)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("got no error, want one containing %q", tt.wantErr)
				}
				for _, want := range tt.wantErr {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not contain %q", err, want)
					}
				}
				if n := len(err.Error()); n > OutputLimit+1024 {
					t.Errorf("error is %d bytes long; the output in it is not bounded", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		max    int
		want   string
	}{
		{"fits", []string{"ab", "cd"}, 8, "abcd"},
		{"exactly full", []string{"abcd", "efgh"}, 8, "abcdefgh"},
		{"overflow across writes", []string{"abcdef", "ghij"}, 8, "[…]cdefghij"},
		{"one large write", []string{"abcdefghijkl"}, 8, "[…]efghijkl"},
		{"large write after small", []string{"x", "abcdefgh"}, 8, "[…]abcdefgh"},
		{"cut inside a rune", []string{"ééééé"}, 5, "[…]éé"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &tailBuffer{max: tt.max}
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := b.String(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRunReturnsTheEndOfTheOutput(t *testing.T) {
	out, err := Run(context.Background(), []string{"/bin/sh", "-c", "echo first; echo reloaded fine"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if out != "first\nreloaded fine" {
		t.Errorf("output %q, want both lines, trimmed", out)
	}
}

func TestQuote(t *testing.T) {
	if got, want := Quote([]string{"systemctl", "reload", "vault server", ""}), `systemctl reload "vault server" ""`; got != want {
		t.Errorf("Quote = %s, want %s", got, want)
	}
}

// TestShellJoin: a POSIX shell reads back exactly the words ShellJoin
// was given, whatever they hold; plain words are left unquoted.
func TestShellJoin(t *testing.T) {
	if got := ShellJoin([]string{"sync", "--", "/etc/nginx/tls"}); got != "sync -- /etc/nginx/tls" {
		t.Errorf("plain words: %q", got)
	}
	args := []string{"it's", "$HOME", "`id`", "a b", "", "new\nline", `back\slash`, "*"}
	out, err := exec.Command("sh", "-c", `for a in `+ShellJoin(args)+`; do printf '%s\000' "$a"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if strings.Join(got, "|") != strings.Join(args, "|") || len(got) != len(args) {
		t.Errorf("a shell reads %q as %q, want %q", ShellJoin(args), got, args)
	}
}
