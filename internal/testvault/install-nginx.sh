#!/bin/sh
# Installs nginx from Debian's package for the harness's edge proxy
# (internal/testvault, proxy.go), once: nothing to do when nginx is there.
# Not root and nginx missing: says so and exits 0; the tests that need nginx
# skip. The package's own service must not start (it would bind port 80):
# a policy-rc.d that forbids every start is in place during the install,
# and the service is stopped and disabled afterwards in case one ran
# anyway. The harness runs its own nginx instances, on loopback high ports.
set -eu
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-nginx: nginx is missing and this is not root: the tests that need nginx will skip" >&2
	exit 0
fi
echo "install-nginx: installing nginx from Debian's package (its service is not started)"
policy=/usr/sbin/policy-rc.d
ours=
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\n# install-nginx (rotplan): no service starts during the install\nexit 101\n' >"$policy"
	chmod 755 "$policy"
	ours=1
fi
cleanup() { if [ -n "$ours" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
# A failed install (no mirror reachable, say) does not fail make test: the
# tests that need nginx skip, and this says so loudly.
failed() {
	echo "install-nginx: WARNING: $1 failed: the tests that need nginx will skip" >&2
	exit 0
}
apt-get update -qq >/dev/null || failed "apt-get update"
pkg=nginx
if ! apt-cache show nginx >/dev/null 2>&1; then
	pkg=nginx-light
fi
apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null || failed "apt-get install $pkg"
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl disable --now nginx.service >/dev/null 2>&1 || true
elif [ -x /etc/init.d/nginx ]; then
	/etc/init.d/nginx stop >/dev/null 2>&1 || true
fi
nginx -v
