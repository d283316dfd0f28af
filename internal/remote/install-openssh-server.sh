#!/bin/sh
# Installs Debian's OpenSSH server for the tests of internal/remote, which
# start their own sshd on loopback addresses: nothing to do when
# /usr/sbin/sshd is there. Not root and sshd missing: says so and exits 0;
# those tests skip. The package's own service must not start (it would
# listen on port 22 on every address): a policy-rc.d that forbids every
# start is in place during the install, and the service is stopped and
# disabled afterwards in case one ran anyway.
set -eu
if [ -x /usr/sbin/sshd ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-openssh-server: sshd is missing and this is not root: the remote tests will skip" >&2
	exit 0
fi
echo "install-openssh-server: installing openssh-server from Debian's package (its service is not started)"
policy=/usr/sbin/policy-rc.d
ours=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# install-openssh-server (rotplan): no service starts during the install\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	ours=1
fi
cleanup() { if [ -n "$ours" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
# A failed install does not fail make test: the remote tests skip, and
# this says so loudly.
failed() {
	echo "install-openssh-server: WARNING: $1 failed: the remote tests will skip" >&2
	exit 0
}
apt-get update -qq >/dev/null || failed "apt-get update"
apt-get install -y -qq --no-install-recommends openssh-server >/dev/null || failed "apt-get install openssh-server"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl disable --now ssh.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/ssh ]; then
	/etc/init.d/ssh stop >/dev/null 2>&1 || true
fi
/usr/sbin/sshd -V 2>&1 | head -1
