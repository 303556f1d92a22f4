#!/usr/bin/env bash
# Volumes benchmark, in one run on this machine against a local s3rver it
# starts and stops: pool bring-up with two volumes against without, and a
# 256 MiB object read through an s3fs mount against `skyrun s3 cp` of it.
#   bash bench/volumes.sh [MiB] [reps]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mib=${1:-256}
reps=${2:-5}
cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSKYRUN_TESTS=OFF > /dev/null
cmake --build build-bench -j"$(nproc)" --target skyrun skyrun-worker skyrun-worker-dynamic > /dev/null
state=$(mktemp -u "${TMPDIR:-/tmp}/skyrun-bench-s3.XXXXXX")
work=$(mktemp -d)
trap 'bash tests/support/s3rver.sh stop "$state" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
bash tests/support/s3rver.sh start "$state" >/dev/null
. "$state"
export S3_ENDPOINT AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=$S3_ENDPOINT
sky=build-bench/skyrun
echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(uname -r), s3rver, $mib MiB"
$sky s3 mb s3://bench >/dev/null
head -c $((mib << 20)) /dev/urandom > "$work/big"
$sky --no-progress s3 cp "$work/big" s3://bench/big/big >/dev/null
echo x | $sky s3 cp - s3://bench/in/x >/dev/null 2>&1 || { echo x > "$work/x"; $sky s3 cp "$work/x" s3://bench/in/x >/dev/null; }
for i in 1 2 3; do
  rm -f "$work/down"
  /usr/bin/time -f "skyrun s3 cp (download): %e s" $sky --no-progress s3 cp s3://bench/big/big "$work/down" >/dev/null
done
$sky bench/volumes.lua bench big "$reps"
