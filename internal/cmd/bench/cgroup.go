package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// cpuPeriod is the CFS period of the quota limitCPU sets, in microseconds.
const cpuPeriod = 100000

// limitCPU caps process pid (every thread, and every thread it starts
// later) at fraction of one CPU, with a cgroup of its own under the cpu
// controller: cgroup v2's cpu.max where the unified hierarchy has the cpu
// controller, v1's cfs quota otherwise. undo moves the process back to the
// root group and removes the group; on v2 the cpu controller it enabled
// for the root's children stays enabled. It needs root.
//
// With Vault slower than one client CPU, the benchmark shows whether
// rotplan keeps up with Vault (it is then Vault-bound, as B is), which on
// a host where Vault and the clients each get one CPU it cannot show.
func limitCPU(pid int, fraction float64) (undo func() error, err error) {
	if fraction <= 0 || fraction > 64 {
		return nil, fmt.Errorf("-vault-cpu %g: want a fraction of a CPU, above 0 and at most 64", fraction)
	}
	quota := int(fraction * cpuPeriod)
	name := fmt.Sprintf("rotplan-bench-%d", os.Getpid())
	write := func(path, value string) error { return os.WriteFile(path, []byte(value), 0o644) }

	var root, group string
	var settings [][2]string
	if controllers, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil && slices.Contains(strings.Fields(string(controllers)), "cpu") {
		root = "/sys/fs/cgroup"
		if err := write(filepath.Join(root, "cgroup.subtree_control"), "+cpu"); err != nil {
			return nil, fmt.Errorf("enabling the cpu controller: %w", err)
		}
		group = filepath.Join(root, name)
		settings = [][2]string{{"cpu.max", fmt.Sprintf("%d %d", quota, cpuPeriod)}}
	} else if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"); err == nil {
		root = "/sys/fs/cgroup/cpu"
		group = filepath.Join(root, name)
		settings = [][2]string{{"cpu.cfs_period_us", strconv.Itoa(cpuPeriod)}, {"cpu.cfs_quota_us", strconv.Itoa(quota)}}
	} else {
		return nil, errors.New("-vault-cpu: no cgroup cpu controller (neither v2's cpu.max nor v1's cpu.cfs_quota_us) on this host")
	}
	if err := os.Mkdir(group, 0o755); err != nil {
		return nil, fmt.Errorf("-vault-cpu: %w", err)
	}
	undo = func() error {
		// Vault may have exited already; the group must be empty to go.
		_ = write(filepath.Join(root, "cgroup.procs"), strconv.Itoa(pid))
		return os.Remove(group)
	}
	for _, s := range settings {
		if err := write(filepath.Join(group, s[0]), s[1]); err != nil {
			undo()
			return nil, fmt.Errorf("-vault-cpu: %s: %w", s[0], err)
		}
	}
	// cgroup.procs moves every thread of the process, in v1 as in v2.
	if err := write(filepath.Join(group, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		undo()
		return nil, fmt.Errorf("-vault-cpu: moving Vault: %w", err)
	}
	return undo, nil
}
