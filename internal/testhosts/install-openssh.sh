#!/bin/sh
# Installs Debian's OpenSSH server and client for the fleet test bed
# (internal/testhosts), once: nothing to do when /usr/sbin/sshd, ssh, sftp
# and ssh-keygen are there. Not root and something missing: says so and
# exits 0; the tests that need the bed skip (they need root anyway). The
# package's own service is neither started nor enabled (it would listen on
# port 22 of the machine; internal/debian/install-packages.sh): the harness
# runs its own sshd instances, each inside a network namespace of its own.
set -eu
have() {
	[ -x /usr/sbin/sshd ] && command -v ssh >/dev/null 2>&1 &&
		command -v sftp >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1
}
if have; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-openssh: OpenSSH (server or client) is missing and this is not root: the tests that need the fleet bed will skip" >&2
	exit 0
fi
echo "install-openssh: installing openssh-server and openssh-client from Debian's packages (the ssh service is neither started nor enabled)"
sh "$(dirname "$0")/../debian/install-packages.sh" install-openssh "ssh.service ssh.socket" openssh-server openssh-client
if have; then
	ssh -V
fi
