#!/bin/sh
# Installs the Debian packages the grader needs, where missing: bubblewrap, util-linux (setpriv,
# nsenter) and libseccomp2 for the sandbox; with --test also Chromium and CJK fonts for the
# browser tests (Playwright drives Debian's Chromium: never `playwright install`), and
# postgresql and redis-server, whose binaries the tests run as throwaway servers of their own
# (tests/servers.py). As root it installs them; otherwise it says exactly what to run.
#
# Installing postgresql or redis-server leaves no server running that was not running before:
# their services are kept from starting (Debian's policy-rc.d, unless one is already in place),
# a cluster the install created is dropped (one that existed before is never touched), and on a
# machine run by systemd the redis-server service this install enabled is disabled.
set -eu
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
command -v nsenter >/dev/null 2>&1 || missing="$missing util-linux"
# the sandboxes' seccomp filter is built with the system's libseccomp (through pyseccomp)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing="$missing libseccomp2"
new_redis=""
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing="$missing fonts-noto-cjk"
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$missing postgresql"
  if ! command -v redis-server >/dev/null 2>&1; then
    missing="$missing redis-server"
    new_redis=yes
  fi
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages:$missing" >&2
  echo "install them with: sudo apt-get install -y$missing" >&2
  exit 1
fi

echo "installing system packages:$missing"
clusters_before=$(pg_lsclusters -h 2>/dev/null || true)
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# scripts/install-sysdeps.sh: no service starts while it installs\nexit 101\n' \
    >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  trap 'exit 130' INT TERM
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing

# The postgresql package makes a cluster "main" (port 5432) on its first install: the tests make
# their own, so one that was not there before is stopped if running and dropped.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h | while read -r version cluster _rest; do
    if ! printf '%s\n' "$clusters_before" | grep -q "^$version $cluster "; then
      echo "dropping PostgreSQL cluster $version/$cluster, made by this install"
      pg_dropcluster --stop "$version" "$cluster"
    fi
  done
fi
if [ -n "$new_redis" ] && [ -d /run/systemd/system ]; then
  echo "disabling the redis-server service enabled by this install (the tests start their own)"
  systemctl disable --now --quiet redis-server.service || true
fi
