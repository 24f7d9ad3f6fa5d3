#!/bin/sh
# Rehearse docs/course-ci.yml's job on this machine: the same steps, in the grader's runtime
# image, on a course folder (exercises/ and reference/) and this checkout of the grader.
#
#   scripts/course_ci_local.sh COURSE [WORKDIR]
#
# Needs a Docker daemon and the runtime image (`make image`). WORKDIR (default: a new folder
# under /tmp) receives copies of COURSE and of this checkout (committed files only), the data
# cache and dry-run.json, as the job's workspace and home would. Exits with the dry-run's status.
set -eu
course=${1:?usage: scripts/course_ci_local.sh COURSE [WORKDIR]}
work=${2:-$(mktemp -d /tmp/course-ci.XXXXXX)}
here=$(cd "$(dirname "$0")/.." && pwd)
image=$("$here/.venv/bin/grader" image status | cut -d' ' -f1)

mkdir -p "$work/home"
rm -rf "$work/course" "$work/grader"
mkdir "$work/course"
cp -r "$course/exercises" "$course/reference" "$work/course/"
git -C "$here" archive --format=tar --prefix=grader/ HEAD | tar -x -C "$work"

# A machine behind a TLS-inspecting proxy trusts its own CA bundle: the container gets it too
# (GitHub's runners need nothing of the kind).
ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
set -- --rm --user 0 -v "$work:/github/workspace" -v "$work/home:/github/home" \
    -w /github/workspace -e GRADER_DATA_DIR=/github/home/grader-data
if [ -s "$ca" ]; then
    set -- "$@" -v "$ca:/etc/ssl/host-ca.crt:ro" -e PIP_CERT=/etc/ssl/host-ca.crt \
        -e SSL_CERT_FILE=/etc/ssl/host-ca.crt
fi
echo "course CI in $image, workspace $work" >&2
exec docker run "$@" "$image" sh -euxc '
/opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --quiet ./grader
/opt/venv/bin/grader data fetch
cp "$GRADER_DATA_DIR/sandbox/mnist.npz" /data/
/opt/venv/bin/grader dry-run --exercises course/exercises --sandbox unsafe --json > dry-run.json
'
