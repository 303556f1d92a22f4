#!/usr/bin/env bash
# Installs the Debian packages skyrun needs to build and test, and the npm
# packages the tests use (into the repo's own ignored .deps/npm/).
# Idempotent: installs only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  build-essential cmake pkg-config clang libclang-rt-14-dev
  liblua5.4-dev lua5.4 lua-cjson lua-lpeg
  libcurl4-openssl-dev libssl-dev libssh2-1-dev liblz4-dev libyaml-dev
  libexpat1-dev libcmocka-dev
  file time bc curl s3fs fuse3 openssh-server openssh-client awscli iproute2 procps psmisc
  # Ceph's RADOS Gateway, the second (stricter) S3 server of the storage tests
  # (tests/support/rgw.sh). Installing starts no daemon where policy-rc.d
  # forbids it (containers); elsewhere see the note below.
  ceph-mon ceph-osd radosgw ceph-common
  # Slurm and munge, for the Slurm provider's test cluster (tests/slurm/).
  slurmctld slurmd slurm-client munge

)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq || true
  # Daemons these packages bring (munge, slurmctld, slurmd, sshd) must not start: the
  # tests start their own, with their own state. Where no policy-rc.d says so already,
  # one is put in place for the install only.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# skyrun install-deps: no daemon starts while packages install\nexit 101\n' |
      "${sudo_cmd[@]}" tee /usr/sbin/policy-rc.d >/dev/null && "${sudo_cmd[@]}" chmod 755 /usr/sbin/policy-rc.d &&
      own_policy=1
  fi
  rc=0
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" || rc=$?
  [ "$own_policy" = 1 ] && "${sudo_cmd[@]}" rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || exit "$rc"
fi

# The ceph packages enable system units (ceph-mon.target, ceph-osd.target,
# ceph-radosgw.target...). They have no configuration in /etc/ceph, so even
# where invoke-rc.d may start them nothing runs; the tests keep all their
# state in a folder of their own and never use /etc/ceph.
if [ ${#missing[@]} -gt 0 ] && pgrep -x 'ceph-mon|ceph-osd|radosgw' >/dev/null 2>&1; then
  echo "install-deps: note: a ceph daemon is running on this machine (not started by the tests)" >&2
fi

# s3rver: the S3-compatible server the tests run on loopback.
# Node.js and npm usually come with the machine (a newer Node than Debian's);
# only where they are missing are Debian's packages installed.
if ! command -v npm >/dev/null; then
  echo "install-deps: npm missing, installing Debian's nodejs and npm" >&2
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq || true
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nodejs npm
fi
command -v npm >/dev/null || { echo "install-deps: npm is needed for the test S3 server" >&2; exit 1; }
if [ ! -x "$here/.deps/npm/node_modules/.bin/s3rver" ]; then
  echo "install-deps: installing s3rver into $here/.deps/npm" >&2
  mkdir -p "$here/.deps/npm"
  npm install --prefix "$here/.deps/npm" --no-audit --no-fund --silent s3rver@3 >&2
fi
