// Package testhosts is the fleet test bed; it is never used by rotplan
// itself.
//
// It owns bringing up, on one Linux machine, a small fleet of real hosts
// reachable over SSH, for tests (see [Start]) and, later, for the fleet
// benchmark (see [StartFleet]):
//
//   - A bed is a set of network namespaces, all named after the bed (the
//     prefix [Prefix], then the number X of its subnet 10.231.X.0/24, e.g.
//     rpth-17): one holds a Linux bridge and nothing else (rpth-17-br, no
//     address), the controller (rpth-17-ctl, 10.231.X.2), where rotplan
//     and the tests' clients run, and one namespace per host (rpth-17-h1,
//     10.231.X.11, ...). Each of those has loopback up and one veth, eth0,
//     whose peer is a port of the bridge named after the namespace. IPv6 is
//     off in every namespace of the bed. Nothing is added to the root
//     namespace: no address, no route, no interface, so no traffic of the
//     bed can leave it, and [StartFleet] checks that the controller's only
//     routes are the bed's subnet and loopback.
//   - Every host runs Debian's OpenSSH server (/usr/sbin/sshd -D -e,
//     installed by install-openssh.sh; make test runs it as root) with a
//     configuration of its own under the bed's directory: an ed25519 host
//     key the harness generates, root logins by key only, an authorized
//     keys file the harness writes, no PAM, SFTP by internal-sftp, its pid
//     file and its log. Sessions get a home of the host's own (HOME is
//     Host.Home), so the machine's root shell startup files are not read. StrictModes is on when the bed's files can satisfy
//     it (they are root's, in directories nobody else can write to: the
//     default directory under [StateDir] is), off otherwise
//     ([Fleet.StrictModes]).
//   - The controller gets a client key pair, a known_hosts file holding
//     every host's key by address (with the port when it is not 22) and an
//     ssh_config for humans: ip netns exec rpth-17-ctl ssh -F
//     DIR/controller/ssh_config h1.
//   - [Namespace.Command] runs a program in a namespace of the bed
//     (through ip netns exec), [Namespace.Dial] opens a TCP connection from
//     it for Go code, and [Namespace.Cut] and [Namespace.Restore] take a
//     namespace's link to the bridge down and up, as a cable pulled at the
//     switch.
//
// The harness supervises the sshd processes (they die with the thread
// that started them, Pdeathsig) and [Fleet.Stop] ends every process in the
// bed's namespaces and deletes the namespaces, which takes their veths
// with them. A bed holds a lock (an flock on StateDir/NAME.lock) for its
// whole life; a run killed before Stop leaves namespaces whose lock is
// free, and the next [StartFleet] sweeps them (their processes are killed,
// the namespaces deleted). Only namespaces named with [Prefix] are ever
// touched.
//
// Everything needs root (network namespaces, sshd's privilege separation)
// and the ip command (iproute2). The harness is Linux-only.
package testhosts
