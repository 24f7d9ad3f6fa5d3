#!/bin/sh
# Installs the Debian packages the grader needs, where missing: bubblewrap, util-linux (setpriv,
# nsenter) and libseccomp2 for the sandbox; with
# --test also Chromium and CJK fonts for the browser tests (Playwright drives Debian's Chromium:
# never `playwright install`), and Docker (docker.io: the docker backend's tests start dockerd
# when no daemon answers) with debootstrap (the runtime image's base where no registry is
# reachable). As root it installs them; otherwise it says exactly what to run.
set -eu
missing=""
command -v bwrap >/dev/null 2>&1 || missing="$missing bubblewrap"
command -v setpriv >/dev/null 2>&1 || missing="$missing util-linux"
command -v nsenter >/dev/null 2>&1 || missing="$missing util-linux"
# the sandboxes' seccomp filter is built with the system's libseccomp (through pyseccomp)
/sbin/ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2' || missing="$missing libseccomp2"
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || missing="$missing fonts-noto-cjk"
  [ -x /usr/sbin/dockerd ] || missing="$missing docker.io"
  [ -x /usr/sbin/debootstrap ] || missing="$missing debootstrap"
fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing system packages:$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
else
  echo "missing system packages:$missing" >&2
  echo "install them with: sudo apt-get install -y$missing" >&2
  exit 1
fi
