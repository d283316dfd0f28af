#!/bin/sh
# install-packages.sh LABEL "SERVICE..." PACKAGE...
#
# Installs Debian packages that a test bed needs (nginx, OpenSSH), as root,
# without ever starting or enabling their own services: the beds run their
# own instances, and a packaged service would listen on the machine's ports.
# A policy-rc.d that forbids every start is in place during the install
# (unless the machine has one), and SERVICE... are disabled and stopped
# afterwards in case one ran anyway. A failed apt-get does not fail make
# test by itself: the tests that need the bed skip (or fail, with CI set),
# and this says so loudly. The callers (install-nginx.sh,
# install-openssh.sh) decide whether anything is missing and whether this
# is root.
set -eu
label=$1
services=$2
shift 2
policy=/usr/sbin/policy-rc.d
ours=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# %s (rotplan): no service starts during the install\nexit 101\n' "$label" >"$policy"
	chmod 755 "$policy"
	ours=1
fi
cleanup() { if [ -n "$ours" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
failed() {
	echo "$label: WARNING: $1 failed: the tests that need it will skip (fail with CI set)" >&2
	exit 0
}
apt-get update -qq >/dev/null || failed "apt-get update"
apt-get install -y -qq --no-install-recommends "$@" >/dev/null || failed "apt-get install $*"
for s in $services; do
	if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
		systemctl disable --now "$s" >/dev/null 2>&1 || true
	else
		name=${s%.service}
		if [ -x "/etc/init.d/$name" ]; then
			"/etc/init.d/$name" stop >/dev/null 2>&1 || true
		fi
		if command -v update-rc.d >/dev/null 2>&1; then
			update-rc.d "$name" disable >/dev/null 2>&1 || true
		fi
	fi
done
