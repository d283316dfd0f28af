package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"github.com/rotplan/rotplan/internal/atomicfile"
	"github.com/rotplan/rotplan/internal/testvault"
)

const marker = ".rotplan-bench"

func main() { os.Exit(bench()) }

type options struct {
	vaultBin, rotplanBin, dir, plan string
	baseline                        string
	profile                         string
	n, workers, shellN, bigApps     int
	parallelism, also               int
	pin                             bool
	rounds                          int
	vaultCPU                        float64
}

func bench() int {
	var o options
	flag.StringVar(&o.vaultBin, "vault", "", "vault server binary")
	flag.StringVar(&o.rotplanBin, "rotplan", "", "rotplan binary")
	flag.StringVar(&o.baseline, "baseline", "", "an earlier rotplan `BIN`ary: also run A with it (series A1), in the same rounds, and the large plan, and print new/old ratios, so that a change is measured against its base on the same machine at the same time")
	flag.StringVar(&o.dir, "dir", ".bench", "work directory (emptied first)")
	flag.StringVar(&o.plan, "plan", "examples/leaves.hcl", "the leaf rotation plan")
	flag.IntVar(&o.n, "n", 500, "certificates per run of A and B")
	flag.IntVar(&o.workers, "workers", 16, "concurrent workers of B: at most this many requests at Vault at once")
	flag.IntVar(&o.parallelism, "parallelism", 0, "rotplan's -parallelism in A (default: -workers)")
	flag.IntVar(&o.also, "also-parallelism", 0, "also run A with this -parallelism (series AP), in the same rounds; 0: not")
	flag.IntVar(&o.shellN, "shell-n", 50, "certificates for the shell loop C (it is slow)")
	flag.IntVar(&o.bigApps, "big-apps", 2000, "apps in the large plan (5 steps each)")
	flag.IntVar(&o.rounds, "rounds", 9, "rounds of B, A and A0, in rotating order; medians count (this machine's speed drifts)")
	flag.BoolVar(&o.pin, "pin", runtime.NumCPU() >= 2, "run Vault on CPU 0 and the clients on the other CPUs, so that a client's CPU use does not slow Vault down (needs taskset)")
	flag.Float64Var(&o.vaultCPU, "vault-cpu", 0, "limit Vault to this fraction of one CPU (a cgroup cpu quota; needs root), to see whether rotplan keeps up with a Vault slower than its client; 0: no limit")
	flag.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of rotplan in A's last round to `FILE`")
	flag.Parse()
	if o.vaultBin == "" || o.rotplanBin == "" {
		fmt.Fprintln(os.Stderr, "usage: bench -vault BIN -rotplan BIN [-n 500] [-workers 16] [-shell-n 50] [-big-apps 2000]")
		return 2
	}
	if o.parallelism == 0 {
		o.parallelism = o.workers
	}
	if o.vaultCPU < 0 {
		fmt.Fprintf(os.Stderr, "bench: -vault-cpu %g: want a fraction of a CPU, or 0 for no limit\n", o.vaultCPU)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	return 0
}

func run(ctx context.Context, o options) error {
	removeOld, err := testvault.SetAside(o.dir, marker)
	if err != nil {
		return err
	}
	base, err := testvault.PrepareDir(o.dir, marker)
	if err != nil {
		return err
	}
	fmt.Printf("== rotplan bench: Vault in %s\n", base)
	v, err := testvault.Start(ctx, testvault.Options{Binary: o.vaultBin, Dir: base})
	if err != nil {
		return err
	}
	defer v.Stop()

	if o.pin {
		if err := pin(v.PID()); err != nil {
			return err
		}
		fmt.Printf("Vault (pid %d) pinned to CPU 0; the clients to CPUs 1-%d.\n", v.PID(), runtime.NumCPU()-1)
	}
	if o.vaultCPU > 0 {
		undo, err := limitCPU(v.PID(), o.vaultCPU)
		if err != nil {
			return err
		}
		defer func() {
			if err := undo(); err != nil {
				fmt.Fprintf(os.Stderr, "bench: removing Vault's cgroup: %v\n", err)
			}
		}()
		fmt.Printf("Vault limited to %.2f of a CPU (cgroup cpu quota).\n", o.vaultCPU)
	}
	client, err := login(ctx, v)
	if err != nil {
		return err
	}
	// One token for all three, as an operator logs in once.
	env := append(os.Environ(), v.Environ()...)
	env = append(env, "VAULT_TOKEN="+client.Token())

	fmt.Printf("Warming up Vault (%d certificates)...\n", o.workers)
	if _, err := ceiling(ctx, client, filepath.Join(base, "warm"), o.workers, o.workers); err != nil {
		return err
	}

	// Vault slows down a little as its storage fills with certificates, so
	// the rounds rotate the order of B, A, and A with its journal on tmpfs
	// (A0: there an fsync costs nothing, so the difference between A and
	// A0 is what making the journal durable costs the run).
	var a, a0, ap, a1, b []measure
	for round := 1; round <= o.rounds; round++ {
		runB := func() error {
			v0, c0 := processCPU(v.PID()), readCPUs(o.clientCPUs())
			mb, err := ceiling(ctx, client, filepath.Join(base, fmt.Sprintf("b%d", round)), o.n, o.workers)
			if err != nil {
				return fmt.Errorf("B: %w", err)
			}
			mb.vault, mb.clients = processCPU(v.PID())-v0, readCPUs(o.clientCPUs()).since(c0)
			fmt.Printf("round %d B  (vault/api, %d workers): %d certs in %s: %.1f certs/s; it used %s of CPU, Vault %s (%s); client CPUs %s\n", round, o.workers, o.n, mb.wall.Round(time.Millisecond), mb.rate(), mb.cpu.Round(time.Millisecond), mb.vault, mb.vaultBusy(), mb.clients)
			b = append(b, mb)
			return nil
		}
		runA := func(label, state string, parallelism int, into *[]measure) func() error {
			return func() error {
				o := o
				if label == "A1" {
					o.rotplanBin = o.baseline
				}
				v0, c0 := processCPU(v.PID()), readCPUs(o.clientCPUs())
				ma, err := rotplanRun(ctx, o, env, filepath.Join(base, fmt.Sprintf("%s-%d", label, round)), state, parallelism, o.n)
				if err != nil {
					return fmt.Errorf("%s: %w", label, err)
				}
				ma.vault, ma.clients = processCPU(v.PID())-v0, readCPUs(o.clientCPUs()).since(c0)
				fmt.Printf("round %d %-2s (rotplan, -parallelism %d): %d certs in %s: %.1f certs/s; rotplan used %s of CPU, Vault %s (%s); client CPUs %s; journal share of step time %s\n",
					round, label, parallelism, o.n, ma.wall.Round(time.Millisecond), ma.rate(), ma.cpu.Round(time.Millisecond), ma.vault, ma.vaultBusy(), ma.clients, ma.journal)
				*into = append(*into, ma)
				return nil
			}
		}
		shm, err := os.MkdirTemp("/dev/shm", "rotplan-bench-state-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(shm)
		order := []func() error{runB, runA("A", "", o.parallelism, &a), runA("A0", shm, o.parallelism, &a0)}
		if o.also > 0 {
			order = append(order, runA("AP", "", o.also, &ap))
		}
		if o.baseline != "" {
			order = append(order, runA("A1", "", o.parallelism, &a1))
		}
		for range (round - 1) % len(order) {
			order = append(order[1:], order[0])
		}
		for _, f := range order {
			if err := f(); err != nil {
				return err
			}
		}
	}
	c, cErr := shellLoop(ctx, env, o.vaultBin, filepath.Join(base, "c"), o.shellN)
	if cErr != nil {
		fmt.Printf("C skipped: %v\n", cErr)
	} else {
		fmt.Printf("C (shell loop over the vault CLI): %d certs in %s: %.1f certs/s\n", o.shellN, c.wall.Round(time.Millisecond), c.rate())
	}

	big, err := largePlan(ctx, o, env, filepath.Join(base, "big"))
	if err != nil {
		return fmt.Errorf("large plan: %w", err)
	}
	var bigOld bigResult
	if o.baseline != "" {
		ob := o
		ob.rotplanBin = o.baseline
		if bigOld, err = largePlan(ctx, ob, env, filepath.Join(base, "big-baseline")); err != nil {
			return fmt.Errorf("large plan, baseline: %w", err)
		}
	}

	mA, mA0, mB := median(a), median(a0), median(b)
	pinned := "Vault and clients sharing every CPU"
	if o.pin {
		pinned = "Vault pinned to CPU 0, clients to the others"
	}
	if o.vaultCPU > 0 {
		pinned += fmt.Sprintf(", Vault limited to %.2f of a CPU", o.vaultCPU)
	}
	fmt.Printf("\n## Results (N=%d, B with W=%d workers, A with -parallelism %d, %d rounds, %s; medians, range in brackets)\n\n", o.n, o.workers, o.parallelism, o.rounds, pinned)
	fmt.Println("| what | certs | wall | certs/s |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| A: rotplan (issue, key 0600 + cert + chain, key_pair check) | %d | %s | %.1f (%s) |\n", o.n, mA.wall.Round(time.Millisecond), mA.rate(), spread(a))
	fmt.Printf("| A0: the same, journal on tmpfs (fsync free) | %d | %s | %.1f (%s) |\n", o.n, mA0.wall.Round(time.Millisecond), mA0.rate(), spread(a0))
	if o.also > 0 {
		mAP := median(ap)
		fmt.Printf("| AP: A with -parallelism %d | %d | %s | %.1f (%s) |\n", o.also, o.n, mAP.wall.Round(time.Millisecond), mAP.rate(), spread(ap))
	}
	if o.baseline != "" {
		mA1 := median(a1)
		fmt.Printf("| A1: A with the baseline binary | %d | %s | %.1f (%s) |\n", o.n, mA1.wall.Round(time.Millisecond), mA1.rate(), spread(a1))
	}
	fmt.Printf("| B: vault/api, %d workers, same files, same check | %d | %s | %.1f (%s) |\n", o.workers, o.n, mB.wall.Round(time.Millisecond), mB.rate(), spread(b))
	if cErr == nil {
		fmt.Printf("| C: shell loop, vault CLI + jq | %d | %s | %.1f |\n", o.shellN, c.wall.Round(time.Millisecond), c.rate())
	}
	fmt.Println()
	fmt.Printf("A/B = %.2f of medians, %.2f of bests (target >= 0.9)\n", mA.rate()/mB.rate(), best(a).rate()/best(b).rate())
	if o.also > 0 {
		fmt.Printf("AP/B = %.2f of medians, %.2f of bests\n", median(ap).rate()/mB.rate(), best(ap).rate()/best(b).rate())
	}
	if o.baseline != "" {
		fmt.Printf("A/A1 = %.2f of medians, %.2f of bests (this binary's rate over the baseline's; >= 1: no slower); A1/B = %.2f of medians\n",
			mA.rate()/median(a1).rate(), best(a).rate()/best(a1).rate(), median(a1).rate()/mB.rate())
	}
	if cErr == nil {
		fmt.Printf("A/C = %.1f (target >= 20)\n", mA.rate()/c.rate())
	}
	fmt.Printf("journal share of run time, 1 - A0/A wall (medians): %.1f%% (target < 5%%)\n", 100*(1-mA0.wall.Seconds()/mA.wall.Seconds()))
	fmt.Printf("client CPUs busy per run (user + system + softirq; median, of which user): A %.2f s (%.2f s), B %.2f s (%.2f s)\n",
		medianOf(a, func(m measure) float64 { return m.clients.busy() }), medianOf(a, func(m measure) float64 { return float64(m.clients.user) / 100 }),
		medianOf(b, func(m measure) float64 { return m.clients.busy() }), medianOf(b, func(m measure) float64 { return float64(m.clients.user) / 100 }))
	fmt.Printf("journal share of step time in A (time in appends over the steps' time, appends included; median run): %s\n", mA.journal)
	fmt.Println()
	fmt.Printf("| large plan (%d steps) | wall | peak RSS |\n", big.steps)
	fmt.Println("|---|---|---|")
	fmt.Printf("| rotplan validate | %s | %.1f MB |\n", big.validate.wall.Round(time.Millisecond), big.validate.rssMB)
	fmt.Printf("| rotplan plan | %s | %.1f MB |\n", big.plan.wall.Round(time.Millisecond), big.plan.rssMB)
	if o.baseline != "" {
		fmt.Printf("| baseline validate | %s | %.1f MB |\n", bigOld.validate.wall.Round(time.Millisecond), bigOld.validate.rssMB)
		fmt.Printf("| baseline plan | %s | %.1f MB |\n", bigOld.plan.wall.Round(time.Millisecond), bigOld.plan.rssMB)
	}
	fmt.Println("(targets: under 1 s and under 200 MB each)")
	// Only now, with everything measured, does the last run's directory
	// go (see testvault.SetAside).
	return removeOld()
}

// pin gives Vault (every thread of pid) CPU 0, and this process, and so
// every client it starts, the others: on a small host, the CPU a client uses
// is otherwise taken from Vault, and the benchmark would measure that
// rather than whether the client keeps Vault busy.
func pin(pid int) error {
	others := fmt.Sprintf("1-%d", runtime.NumCPU()-1)
	for _, args := range [][]string{
		{"-a", "-p", "-c", "0", strconv.Itoa(pid)},
		{"-a", "-p", "-c", others, strconv.Itoa(os.Getpid())},
	} {
		if out, err := exec.Command("taskset", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("taskset %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// measure is one timed run.
type measure struct {
	certs   int
	wall    time.Duration
	journal string // A: the journal's share of step time, as rotplan logs it
	cpu     time.Duration
	vault   time.Duration // CPU Vault used meanwhile
	clients cpuTimes      // what the clients' CPUs did meanwhile
	rssMB   float64
}

func (m measure) rate() float64 { return float64(m.certs) / m.wall.Seconds() }

// vaultBusy is Vault's CPU over the wall time of the run: near 100% of its
// one CPU when pinned, Vault was the limit.
func (m measure) vaultBusy() string {
	return fmt.Sprintf("%.0f%% busy", 100*m.vault.Seconds()/m.wall.Seconds())
}

// clientCPUs are the CPUs the clients run on: all but CPU 0 when pinned,
// all when not.
func (o options) clientCPUs() []int {
	var cpus []int
	for i := range runtime.NumCPU() {
		if i > 0 || !o.pin {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

// cpuTimes is what a set of CPUs did, from /proc/stat, in clock ticks: the
// whole of it, not only the client processes (softirq time, spent on
// their network traffic and disk completions, is charged to no process).
type cpuTimes struct{ user, system, softirq, idle, total int64 }

func readCPUs(cpus []int) cpuTimes {
	var t cpuTimes
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t
	}
	want := map[string]bool{}
	for _, c := range cpus {
		want["cpu"+strconv.Itoa(c)] = true
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || !want[f[0]] {
			continue
		}
		var v [7]int64 // user nice system idle iowait irq softirq
		for i := range v {
			v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		}
		t.user += v[0] + v[1]
		t.system += v[2] + v[5]
		t.softirq += v[6]
		t.idle += v[3] + v[4]
		for _, x := range v {
			t.total += x
		}
	}
	return t
}

func (t cpuTimes) since(before cpuTimes) cpuTimes {
	return cpuTimes{t.user - before.user, t.system - before.system, t.softirq - before.softirq, t.idle - before.idle, t.total - before.total}
}

// busy is the CPU time, user + system + softirq, in seconds.
func (t cpuTimes) busy() float64 { return float64(t.user+t.system+t.softirq) / 100 }

func (t cpuTimes) String() string {
	if t.total == 0 {
		return "(unknown)"
	}
	pct := func(x int64) float64 { return 100 * float64(x) / float64(t.total) }
	return fmt.Sprintf("user %.0f%% system %.0f%% softirq %.0f%% idle %.0f%% (%.2f s busy)", pct(t.user), pct(t.system), pct(t.softirq), pct(t.idle), t.busy())
}

// processCPU is the CPU time (user + system) process pid has used, from
// /proc/PID/stat, in clock ticks of 10 ms; 0 when it cannot be read.
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing parenthesis (utime is field 14, stime 15).
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// median is the run with the median rate (the lower middle one of an even
// number).
func median(ms []measure) measure {
	sorted := append([]measure(nil), ms...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].rate() < sorted[j].rate() })
	return sorted[(len(sorted)-1)/2]
}

// medianOf is the median of f over the runs.
func medianOf(ms []measure, f func(measure) float64) float64 {
	xs := make([]float64, len(ms))
	for i, m := range ms {
		xs[i] = f(m)
	}
	sort.Float64s(xs)
	return xs[(len(xs)-1)/2]
}

// spread is the lowest and highest rate of the runs.
func spread(ms []measure) string {
	lo, hi := ms[0].rate(), ms[0].rate()
	for _, m := range ms {
		lo, hi = min(lo, m.rate()), max(hi, m.rate())
	}
	return fmt.Sprintf("%.0f-%.0f", lo, hi)
}

func best(ms []measure) measure {
	b := ms[0]
	for _, m := range ms[1:] {
		if m.rate() > b.rate() {
			b = m
		}
	}
	return b
}

// login logs in with the admin certificate, as rotplan does, and returns a
// client that reaches the production listener.
func login(ctx context.Context, v *testvault.Vault) (*vaultapi.Client, error) {
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	if err := cfg.ConfigureTLS(&vaultapi.TLSConfig{
		CACert: v.RootCAFile, TLSServerName: v.ServerName,
		ClientCert: filepath.Join(v.AdminDir, "admin.crt"), ClientKey: filepath.Join(v.AdminDir, "admin.key"),
	}); err != nil {
		return nil, err
	}
	client, err := vaultapi.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	client.ClearToken()
	secret, err := client.Logical().WriteWithContext(ctx, "auth/cert/login", nil)
	if err != nil {
		return nil, fmt.Errorf("cert login: %w", err)
	}
	client.SetToken(secret.Auth.ClientToken)
	return client, nil
}

func app(i int) string { return "app" + strconv.Itoa(i) }

// ceiling is B: n issues straight through vault/api by w workers, each
// followed by what rotplan does with it (the key 0600, the certificate and
// the chain written atomically and durably, then the pair checked).
func ceiling(ctx context.Context, client *vaultapi.Client, dir string, n, w int) (measure, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return measure{}, err
	}
	jobs := make(chan int)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	cpuBefore := selfCPU()
	began := time.Now()
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := issueAndWrite(ctx, client, dir, app(i)); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return measure{certs: n, wall: time.Since(began), cpu: selfCPU() - cpuBefore}, firstErr
}

// selfCPU is the CPU time this process has used (B runs in it).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func issueAndWrite(ctx context.Context, client *vaultapi.Client, dir, name string) error {
	s, err := client.Logical().WriteWithContext(ctx, "pki-prod/issue/leaf", map[string]any{
		"common_name": name + "." + testvault.LeafDomain, "ttl": "72h",
	})
	if err != nil {
		return err
	}
	str := func(k string) string { v, _ := s.Data[k].(string); return strings.TrimSpace(v) + "\n" }
	var chain strings.Builder
	if list, ok := s.Data["ca_chain"].([]any); ok {
		for _, c := range list {
			if c, ok := c.(string); ok {
				chain.WriteString(strings.TrimSpace(c) + "\n")
			}
		}
	}
	key, crt := filepath.Join(dir, name+".key"), filepath.Join(dir, name+".crt")
	for _, f := range []struct {
		path, content string
		mode          os.FileMode
	}{
		{key, str("private_key"), 0o600},
		{crt, str("certificate"), 0o644},
		{filepath.Join(dir, name+".chain.pem"), chain.String(), 0o644},
	} {
		if err := atomicfile.Write(f.path, []byte(f.content), f.mode); err != nil {
			return err
		}
	}
	_, err = tls.LoadX509KeyPair(crt, key)
	return err
}

var journalShare = regexp.MustCompile(`journal: .*share=(\S+)`)

// rotplanRun is A: rotplan rotating n leaf certificates with
// examples/leaves.hcl.
func rotplanRun(ctx context.Context, o options, env []string, dir, state string, parallelism, n int) (measure, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return measure{}, err
	}
	if state == "" {
		state = filepath.Join(dir, "state")
	}
	if o.profile != "" {
		env = append(env, "ROTPLAN_CPUPROFILE="+o.profile)
	}
	// -log-level debug: the journal's statistics line.
	args := []string{"run", "-log-level", "debug", "-state-dir", state, "-parallelism", strconv.Itoa(parallelism),
		"-var", "apps=" + strconv.Itoa(n), "-var", "dir=" + dir, o.plan}
	res, err := timed(ctx, env, o.rotplanBin, args...)
	if err != nil {
		return measure{}, fmt.Errorf("%v\n%s", err, tail(res.stderr, 20))
	}
	m := measure{certs: n, wall: res.wall, cpu: res.cpu}
	if match := journalShare.FindStringSubmatch(res.stderr); match != nil {
		m.journal = match[1]
	}
	for i := range n {
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, app(i)+".crt"), filepath.Join(dir, app(i)+".key")); err != nil {
			return m, fmt.Errorf("after the run: %w", err)
		}
	}
	return m, nil
}

// shellScript is C: what an operator's loop looks like.
const shellScript = `set -eu
umask 077
for i in $(seq 0 $(($N - 1))); do
  out=$(vault write -format=json pki-prod/issue/leaf common_name=app$i.$DOMAIN ttl=72h)
  printf '%s\n' "$out" | jq -r .data.private_key > "$DIR/app$i.key"
  printf '%s\n' "$out" | jq -r .data.certificate > "$DIR/app$i.crt"
  printf '%s\n' "$out" | jq -r '.data.ca_chain | join("\n")' > "$DIR/app$i.chain.pem"
  chmod 0644 "$DIR/app$i.crt" "$DIR/app$i.chain.pem"
done
`

func shellLoop(ctx context.Context, env []string, vaultBin, dir string, n int) (measure, error) {
	if _, err := exec.LookPath("jq"); err != nil {
		return measure{}, errors.New("jq is not installed (apt-get install jq)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return measure{}, err
	}
	// The server binary is the CLI too.
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return measure{}, err
	}
	if err := os.Symlink(vaultBin, filepath.Join(bin, "vault")); err != nil {
		return measure{}, err
	}
	env = append(env, "PATH="+bin+":"+os.Getenv("PATH"), "N="+strconv.Itoa(n), "DIR="+dir, "DOMAIN="+testvault.LeafDomain)
	res, err := timed(ctx, env, "bash", "-c", shellScript)
	if err != nil {
		return measure{}, fmt.Errorf("%v\n%s", err, tail(res.stderr, 20))
	}
	for i := range n {
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, app(i)+".crt"), filepath.Join(dir, app(i)+".key")); err != nil {
			return measure{}, fmt.Errorf("after the loop: %w", err)
		}
	}
	return measure{certs: n, wall: res.wall}, nil
}

type bigResult struct {
	steps          int
	validate, plan measure
}

// largePlan times validate and plan on examples/leaves.hcl with bigApps apps
// (5 steps each), and their peak memory.
func largePlan(ctx context.Context, o options, env []string, dir string) (bigResult, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return bigResult{}, err
	}
	// range() stops at 1024, so the names come from a generated file.
	var names strings.Builder
	names.WriteString("names = [")
	for i := range o.bigApps {
		fmt.Fprintf(&names, "%q, ", app(i))
	}
	names.WriteString("]\n")
	varFile := filepath.Join(dir, "names.hcl")
	if err := os.WriteFile(varFile, []byte(names.String()), 0o644); err != nil {
		return bigResult{}, err
	}
	vars := []string{"-var-file", varFile, "-var", "dir=" + dir, o.plan}
	r := bigResult{steps: 5 * o.bigApps}
	for _, c := range []struct {
		cmd string
		dst *measure
	}{{"validate", &r.validate}, {"plan", &r.plan}} {
		res, err := timed(ctx, env, o.rotplanBin, append([]string{c.cmd}, vars...)...)
		if err != nil {
			return r, fmt.Errorf("%s: %v\n%s", c.cmd, err, tail(res.stderr, 20))
		}
		*c.dst = measure{wall: res.wall, rssMB: res.rssMB}
		fmt.Printf("%s of %d steps: %s, peak RSS %.1f MB\n", c.cmd, r.steps, res.wall.Round(time.Millisecond), res.rssMB)
	}
	return r, nil
}

type timedResult struct {
	wall           time.Duration
	cpu            time.Duration // user + system
	rssMB          float64
	stdout, stderr string
}

// timed runs a command and measures its wall time and peak resident memory.
func timed(ctx context.Context, env []string, name string, args ...string) (timedResult, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	err := cmd.Run()
	res := timedResult{wall: time.Since(began), stdout: stdout.String(), stderr: stderr.String()}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			res.rssMB = float64(ru.Maxrss) / 1024 // KiB on Linux
		}
		res.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return res, err
}

func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
