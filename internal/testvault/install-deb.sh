#!/bin/sh
# Usage: install-deb.sh NAME BINARY SERVICE PACKAGE...
# Installs a server the tests run instances of their own of (nginx for the
# harness's edge proxy, see proxy.go; OpenSSH's sshd for internal/remote)
# from Debian's package, once: nothing to do when BINARY is there. The
# first PACKAGE that apt knows is installed (nginx, else nginx-light).
# Not root and BINARY missing: says so and exits 0; the tests that need
# NAME skip. The package's own service must not start (nginx would bind
# port 80, sshd port 22 on every address): a policy-rc.d that forbids
# every start is in place during the install, and SERVICE is stopped and
# disabled afterwards in case it ran anyway. The tests run their own
# instances, on loopback high ports.
set -eu
name=$1 binary=$2 service=$3
shift 3
if [ -x "$binary" ] || command -v "$name" >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-deb: $name is missing and this is not root: the tests that need $name will skip" >&2
	exit 0
fi
policy=/usr/sbin/policy-rc.d
ours=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# install-deb (rotplan): no service starts during the install\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	ours=1
fi
cleanup() { if [ -n "$ours" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
# A failed install (no mirror reachable, say) does not fail make test: the
# tests that need NAME skip, and this says so loudly.
failed() {
	echo "install-deb: WARNING: $1 failed: the tests that need $name will skip" >&2
	exit 0
}
apt-get update -qq >/dev/null || failed "apt-get update"
pkg=
for p in "$@"; do
	if apt-cache show "$p" >/dev/null 2>&1; then
		pkg=$p
		break
	fi
done
[ -n "$pkg" ] || failed "finding a package for $name among $*"
echo "install-deb: installing $pkg from Debian's package (its service is not started)"
apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null || failed "apt-get install $pkg"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl disable --now "$service.service" >/dev/null 2>&1 || true
elif [ -x "/etc/init.d/$service" ]; then
	"/etc/init.d/$service" stop >/dev/null 2>&1 || true
fi
dpkg-query -W "$pkg"
