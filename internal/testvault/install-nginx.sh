#!/bin/sh
# Installs nginx from Debian's package for the harness's edge proxy
# (internal/testvault, proxy.go), once: nothing to do when nginx is there.
# Not root and nginx missing: says so and exits 0; the tests that need nginx
# skip. The package's service is neither started nor enabled
# (internal/debian/install-packages.sh): the harness runs its own nginx
# instances, on loopback high ports.
set -eu
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-nginx: nginx is missing and this is not root: the tests that need nginx will skip" >&2
	exit 0
fi
echo "install-nginx: installing nginx from Debian's package (its service is not started)"
pkg=nginx
if ! apt-cache show nginx >/dev/null 2>&1; then
	pkg=nginx-light
fi
sh "$(dirname "$0")/../debian/install-packages.sh" install-nginx "nginx.service" "$pkg"
if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
	/usr/sbin/nginx -v
fi
