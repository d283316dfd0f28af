#!/bin/sh
# Installs Debian's OpenSSH server and client for the fleet test bed
# (internal/testhosts), once: nothing to do when /usr/sbin/sshd, ssh, sftp
# and ssh-keygen are there. Not root and something missing: says so and
# exits 0; the tests that need the bed skip (they need root anyway). The
# package's own service must neither start nor be enabled (it would listen
# on port 22 of the machine): a policy-rc.d that forbids every start is in
# place during the install, and ssh.service and ssh.socket are disabled and
# stopped afterwards in case one ran anyway. The harness runs its own sshd
# instances, each inside a network namespace of its own.
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
policy=/usr/sbin/policy-rc.d
ours=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# install-openssh (rotplan): no service starts during the install\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	ours=1
fi
cleanup() { if [ -n "$ours" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
# A failed install (no mirror reachable, say) does not fail make test by
# itself: the tests that need the bed skip (or fail, when CI is set), and
# this says so loudly.
failed() {
	echo "install-openssh: WARNING: $1 failed: the tests that need the fleet bed will skip (fail with CI set)" >&2
	exit 0
}
apt-get update -qq >/dev/null || failed "apt-get update"
apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null ||
	failed "apt-get install openssh-server openssh-client"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl disable --now ssh.service ssh.socket >/dev/null 2>&1 || true
else
	if [ -x /etc/init.d/ssh ]; then
		/etc/init.d/ssh stop >/dev/null 2>&1 || true
	fi
	if command -v update-rc.d >/dev/null 2>&1; then
		update-rc.d ssh disable >/dev/null 2>&1 || true
	fi
fi
ssh -V
