#!/bin/sh
# Installs the Debian packages the grader needs, where missing: bubblewrap, util-linux (setpriv,
# nsenter) and libseccomp2 for the sandbox; with --test also Chromium and CJK fonts for the
# browser tests (Playwright drives Debian's Chromium: never `playwright install`),
# postgresql and redis-server, whose binaries the tests run as throwaway servers of their own
# (tests/servers.py), and Docker (docker.io: the docker backend's tests start dockerd when no
# daemon answers) with debootstrap (the runtime image's base where no registry is reachable).
# As root it installs them; otherwise it says exactly what to run.
#
# Installing postgresql, redis-server or docker.io leaves no server running that was not
# running before:
# their services are kept from starting (a policy-rc.d, unless the machine has one already),
# a cluster the install created is dropped (one that existed before is never touched), and the
# redis-server service it made is stopped (disabled where systemd runs).
set -eu
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
command -v nsenter >/dev/null 2>&1 || missing="$missing util-linux"
# the sandboxes' seccomp filter is built with the system's libseccomp (through pyseccomp)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing="$missing libseccomp2"
servers=""
new_redis=""
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing="$missing fonts-noto-cjk"
  # without their recommends: sysstat would bring cron, and cron a mail server
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || servers="$servers postgresql"
  if ! command -v redis-server >/dev/null 2>&1; then
    servers="$servers redis-server"
    new_redis=yes
  fi
  [ -x /usr/sbin/dockerd ] || missing="$missing docker.io"
  [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
  # docker-compose.yml's end-to-end test: the compose v2 plugin where the docker command has
  # it, else Debian's docker-compose (v1; bookworm has no v2 package)
  docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 ||
    missing="$missing docker-compose"
fi
[ -z "$missing$servers" ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages:$missing$servers" >&2
  [ -z "$missing" ] || echo "install them with: sudo apt-get install -y$missing" >&2
  [ -z "$servers" ] || echo "and: sudo apt-get install -y --no-install-recommends$servers" >&2
  exit 1
fi

echo "installing system packages:$missing$servers"
clusters_before=$(pg_lsclusters -h 2>/dev/null || true)
if [ ! -e /usr/sbin/policy-rc.d ]; then
  # asked by invoke-rc.d ([--quiet] ID ACTION) and deb-systemd-invoke (UNIT ACTION): 101 forbids
  cat >/usr/sbin/policy-rc.d <<'POLICY'
#!/bin/sh
# left by scripts/install-sysdeps.sh while it installs: the tests' servers and dockerd are not
# started (the tests start their own)
[ "${1:-}" = --quiet ] && shift
case "${1:-}" in postgresql*|redis-server*|docker*|containerd*) exit 101 ;; esac
exit 0
POLICY
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  trap 'exit 130' INT TERM
fi
apt-get update -qq
[ -z "$missing" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
[ -z "$servers" ] ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $servers

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
# In case a policy of the machine's let it start: the service this install made is stopped (and
# kept from starting at boot where systemd runs); the tests start their own redis-server.
if [ -n "$new_redis" ]; then
  if [ -d /run/systemd/system ]; then
    systemctl disable --now --quiet redis-server.service || true
  elif [ -x /etc/init.d/redis-server ]; then
    /etc/init.d/redis-server stop >/dev/null || true
  fi
fi
