#!/usr/bin/env bash
# A server that resets or closes connections in the middle of an upload or a
# download, over HTTP or HTTPS, never ends the host by a signal: the transfer
# is retried to a byte-identical end (exit 0), or fails with a message naming
# the operation (exit 1) and leaves nothing partial (no object, no file, no
# temp file). Never exit 128+N — 141 (SIGPIPE) above all.
#
#   reset_transfers.sh http|https skyrun|lua5.4|embed
#
# The hosts: the built `skyrun`, a stock `lua5.4` doing `require "sky"`
# (build/lua/sky.so on LUA_CPATH), and embed_host (tests/support/embed_host.c),
# a C program linking libskyrun that never touches SIGPIPE. Every host starts
# with SIGPIPE at its default action (`env --default-signal=PIPE`), whatever
# the caller left ignored, so a SIGPIPE would kill it.
#
# The peer is faultproxy (tests/support/faultproxy.c), a real TCP server in
# front of the suite's s3rver: it cuts a seeded-random share of the part
# uploads (while the client is writing the body) or of the GETs (while the
# client is reading it) at a random point of the body, with an RST
# (--cut-with reset, SO_LINGER 0) or a FIN (--cut-with close), alternately.
# For HTTPS the proxy terminates TLS itself (a throwaway certificate, given to
# the client as ca_bundle), so the resets hit a live TLS session.
#
# libcurl 7.88 sends with MSG_NOSIGNAL everywhere, so on this machine the
# resets alone cannot raise SIGPIPE; the last case therefore repeats the
# transfers with tests/support/sigpipe_shim.so preloaded, which strips
# MSG_NOSIGNAL from every send (as a libcurl or TLS backend without it would
# send): a TLS close_notify written to a reset connection then raises SIGPIPE
# every time, and only the host's own guard (src/s3/batch.c) keeps it alive.
#
# SKYRUN_RESET_TRIES (default 4) sets the transfers per case.
. "$(dirname "$0")/lib.sh"

SCHEME=${1:?usage: reset_transfers.sh http|https skyrun|lua5.4|embed}
HOST=${2:?usage: reset_transfers.sh http|https skyrun|lua5.4|embed}
TRIES=${SKYRUN_RESET_TRIES:-4}
SIZE=$((26 * MiB + 5))          # four 8 MiB parts: cuts land in large bodies
SANITIZED=${SKYRUN_SANITIZE:-0}

skip() { echo "skipped: $*"; exit 77; }

case $HOST in
  skyrun) HOST_CMD=("$SKYRUN") ;;
  embed)
    [ -x "${EMBED_HOST:-}" ] || skip "no embed_host (EMBED_HOST is not set by ctest)"
    HOST_CMD=("$EMBED_HOST") ;;
  lua5.4)
    [ "$SANITIZED" != 1 ] || skip "a sanitized sky.so cannot be loaded into an uninstrumented lua5.4"
    command -v lua5.4 >/dev/null || skip "no lua5.4"
    export LUA_CPATH="$SKYRUN_BUILD_DIR/lua/?.so;;"
    HOST_CMD=(lua5.4) ;;
  *) echo "unknown host '$HOST'" >&2; exit 2 ;;
esac
case $SCHEME in
  http) TLS_ARGS=() CA="" ;;
  https)
    command -v openssl >/dev/null || skip "no openssl to make a certificate"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
      -keyout "$WORK/tls.key" -out "$WORK/tls.crt" -subj /CN=127.0.0.1 \
      -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1 || skip "openssl cannot make a certificate"
    TLS_ARGS=(--tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key") CA=$WORK/tls.crt ;;
  *) echo "unknown scheme '$SCHEME'" >&2; exit 2 ;;
esac
env --default-signal=PIPE true 2>/dev/null || skip "env --default-signal (coreutils 8.31+) is missing"

# The transfer every host runs: transfer.lua ENDPOINT CA up|down BUCKET KEY PATH RETRIES
SCRIPT=$WORK/transfer.lua
cat >"$SCRIPT" <<'EOF'
local sky = require "sky"
local endpoint, ca, dir, bucket, key, path, retries = ...
local st <close> = sky.storage.s3 { endpoint = endpoint, region = "us-east-1", path_style = true,
  access_key = "S3RVER", secret_key = "S3RVER", ca_bundle = ca ~= "" and ca or nil,
  part_size = 8 * 1024 * 1024, parallel = 4, retries = tonumber(retries), progress = false }
if dir == "up" then st:upload(bucket, path, { key = key }) else st:download(bucket, key, path) end
EOF

# A fault proxy speaking the test's scheme to the client: start_reset_proxy [faultproxy options...]
start_reset_proxy() {
  start_proxy --cut-at random "${TLS_ARGS[@]}" "$@"
  [ "$SCHEME" = http ] || PROXY_ENDPOINT="https://${PROXY_ENDPOINT#http://}"
}

# Runs one transfer through the proxy under the host, with SIGPIPE at its
# default action (and the MSG_NOSIGNAL-stripping shim when SHIM=1); sets RC.
# Fails at once if the host ended by a signal or ran out of time.
#   host_transfer up|down BUCKET KEY PATH RETRIES
host_transfer() {
  local preload=() what=download
  [ "$1" = down ] || what=upload
  [ "${SHIM:-0}" != 1 ] || preload=(LD_PRELOAD="$SIGPIPE_SHIM")
  RC=0
  env --default-signal=PIPE "${preload[@]}" timeout 300 "${HOST_CMD[@]}" "$SCRIPT" \
    "$PROXY_ENDPOINT" "$CA" "$@" >"$WORK/out" 2>"$WORK/err" || RC=$?
  if [ "$RC" -ge 124 ]; then
    echo "    --- stderr:" >&2; sed 's/^/    | /' "$WORK/err" >&2
    [ "$RC" != 124 ] || fail "$HOST ran out of time (300 s) during the $what"
    [ "$RC" != 141 ] || fail "$HOST was killed by SIGPIPE during the $what"
    fail "$HOST ended with status $RC (signal $((RC - 128))) during the $what"
  fi
  case $RC in
    0) ;;
    1) expect_in "$WORK/err" "s3 $what s3://$2/$3" ;;
    *) echo "    --- stderr:" >&2; sed 's/^/    | /' "$WORK/err" >&2
       fail "$HOST exited with status $RC during the $what (0 or 1 expected)" ;;
  esac
}

object_absent() { expect_exit 254 awss3 s3api head-object --bucket "$1" --key "$2"; }

# A folder holds nothing: no file, no temp file.
expect_empty_dir() {
  [ -z "$(ls -A "$1")" ] || fail "left in $1 after a failed download: $(ls -A "$1" | tr '\n' ' ')"
}

# Uploads through resets at random offsets; each try is checked on its own.
#   uploads_through_resets TRIES MODE(alternate|reset) RATE
uploads_through_resets() {
  local tries=$1 modes=$2 rate=$3 b try mode key ok=0 failed=0 cuts=0
  b=$(fresh_bucket reset-up)
  random_file "$WORK/src.bin" "$SIZE"
  for ((try = 1; try <= tries; try++)); do
    mode=reset
    [ "$modes" = reset ] || [ $((try % 2)) = 1 ] || mode=close
    key=up-$try.bin
    start_reset_proxy --cut-request-rate "$rate" --match "partNumber=" --cut-with "$mode" --seed $((try * 7 + 1))
    host_transfer up "$b" "$key" "$WORK/src.bin" 8
    stop_proxy
    cuts=$((cuts + $(proxy_count cut-request)))
    if [ "$RC" = 0 ]; then
      ok=$((ok + 1))
      awscp "s3://$b/$key" "$WORK/back.bin"
      cmp "$WORK/src.bin" "$WORK/back.bin" || fail "try $try: the uploaded object differs from the file"
      rm -f "$WORK/back.bin"
      awss3 s3 rm --only-show-errors "s3://$b/$key"
    else
      failed=$((failed + 1))
      object_absent "$b" "$key"
      expect_uploads_closed_by_client
    fi
  done
  [ "$cuts" -ge 1 ] || fail "the proxy cut no part upload, so this test proved nothing"
  echo "    ($cuts part uploads cut mid-body in $tries uploads: $ok completed, $failed failed cleanly)"
}

# Downloads through resets at random offsets.
#   downloads_through_resets TRIES MODE(alternate|reset) RATE
downloads_through_resets() {
  local tries=$1 modes=$2 rate=$3 b try mode dir ok=0 failed=0 cuts=0
  b=$(fresh_bucket reset-down)
  random_file "$WORK/src.bin" "$SIZE"
  sky_s3 cp "$WORK/src.bin" "s3://$b/obj.bin" >/dev/null   # straight to the server
  for ((try = 1; try <= tries; try++)); do
    mode=reset
    [ "$modes" = reset ] || [ $((try % 2)) = 1 ] || mode=close
    dir=$WORK/dl-$BASHPID-$try
    mkdir -p "$dir"
    start_reset_proxy --cut-response-rate "$rate" --match "GET /$b/obj.bin" --cut-with "$mode" \
      --seed $((try * 7 + 3))
    host_transfer down "$b" obj.bin "$dir/obj.bin" 8
    stop_proxy
    cuts=$((cuts + $(proxy_count cut-response)))
    if [ "$RC" = 0 ]; then
      ok=$((ok + 1))
      cmp "$WORK/src.bin" "$dir/obj.bin" || fail "try $try: the downloaded file differs from the object"
      [ "$(ls -A "$dir")" = obj.bin ] || fail "try $try: more than the file in $dir: $(ls -A "$dir" | tr '\n' ' ')"
    else
      failed=$((failed + 1))
      expect_empty_dir "$dir"
    fi
    rm -rf "$dir"
  done
  [ "$cuts" -ge 1 ] || fail "the proxy cut no GET, so this test proved nothing"
  echo "    ($cuts GETs cut mid-body in $tries downloads: $ok completed, $failed failed cleanly)"
}

test_hosts_start_with_sigpipe_at_its_default() {
  # SigIgn is a hex mask; SIGPIPE (13) is bit 12. Ignored, no SIGPIPE could kill.
  local mask
  mask=$(env --default-signal=PIPE awk '/^SigIgn:/ { print $2 }' /proc/self/status)
  [ $((0x$mask & 0x1000)) = 0 ] || fail "SIGPIPE is still ignored under env --default-signal=PIPE"
}

test_uploads_through_resets() { uploads_through_resets "$TRIES" alternate 50; }
test_downloads_through_resets() { downloads_through_resets "$TRIES" alternate 50; }

test_upload_whose_every_part_is_reset() {
  local b; b=$(fresh_bucket reset-upall)
  random_file "$WORK/src.bin" "$SIZE"
  start_reset_proxy --cut-request-rate 100 --match "partNumber=" --cut-with reset
  host_transfer up "$b" never.bin "$WORK/src.bin" 3
  stop_proxy
  [ "$RC" = 1 ] || fail "the upload succeeded although every part was reset"
  [ "$(proxy_count cut-request)" -ge 1 ] || fail "the proxy cut nothing"
  object_absent "$b" never.bin
  grep -q "DELETE /$b/never.bin?uploadId=" "$PROXY_LOG" || fail "no AbortMultipartUpload was sent"
  expect_uploads_closed_by_client
}

test_download_whose_every_get_is_reset() {
  local b dir; b=$(fresh_bucket reset-dlall)
  random_file "$WORK/src.bin" "$SIZE"
  sky_s3 cp "$WORK/src.bin" "s3://$b/obj.bin" >/dev/null
  dir=$WORK/dl-all
  mkdir -p "$dir"
  start_reset_proxy --cut-response-rate 100 --match "GET /$b/obj.bin" --cut-with reset
  host_transfer down "$b" obj.bin "$dir/obj.bin" 3
  stop_proxy
  [ "$RC" = 1 ] || fail "the download succeeded although every GET was reset"
  [ "$(proxy_count cut-response)" -ge 1 ] || fail "the proxy cut nothing"
  expect_empty_dir "$dir"
}

test_resets_with_msg_nosignal_stripped() {
  SHIM=1
  uploads_through_resets 2 reset 50
  downloads_through_resets 2 reset 50
}

test_case "$HOST over $SCHEME starts with SIGPIPE at its default action" \
  test_hosts_start_with_sigpipe_at_its_default
test_case "$HOST over $SCHEME: part uploads reset or closed mid-body at random points: exit 0 with a byte-identical object, or 1 naming the upload with no object; never a signal" \
  test_uploads_through_resets
test_case "$HOST over $SCHEME: GETs reset or closed mid-body at random points: exit 0 with a byte-identical file, or 1 naming the download with no file; never a signal" \
  test_downloads_through_resets
test_case "$HOST over $SCHEME: an upload whose every part is reset exits 1 naming it, aborted, no object" \
  test_upload_whose_every_part_is_reset
test_case "$HOST over $SCHEME: a download whose every GET is reset exits 1 naming it, no file, no temp file" \
  test_download_whose_every_get_is_reset
if [ "$SANITIZED" = 1 ]; then
  echo "ok   - (skipped under the sanitizers: the MSG_NOSIGNAL-stripping shim cannot be preloaded before ASan)"
elif [ ! -f "${SIGPIPE_SHIM:-}" ]; then
  echo "ok   - (skipped: no sigpipe_shim; SIGPIPE_SHIM is not set by ctest)"
else
  test_case "$HOST over $SCHEME: the same resets with MSG_NOSIGNAL stripped from every send (LD_PRELOAD shim) never kill the host" \
    test_resets_with_msg_nosignal_stripped
fi
finish
