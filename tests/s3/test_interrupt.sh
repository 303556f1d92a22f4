#!/usr/bin/env bash
# Ctrl-C in the middle of a transfer: SIGINT sent to `skyrun s3 cp` while its
# requests crawl through a slowed-down proxy. It must exit non-zero, abort the
# multipart upload (seen on the wire: s3rver refuses AbortMultipartUpload
# itself) and leave no object; a download must remove its temp file and leave
# no destination.
. "$(dirname "$0")/lib.sh"

# Starts `skyrun s3 cp SRC DST` through the proxy, in the background, with
# SIGINT at its default disposition (bash starts background jobs with SIGINT
# ignored, which a program may keep). Sets CP_PID.
start_cp() {
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT env --default-signal=INT "$SKYRUN" s3 cp "$@" \
    >"$WORK/out" 2>"$WORK/err" &
  CP_PID=$!
}

# Waits (bounded) for CP_PID to exit; sets CP_STATUS. SIGKILLs it and fails
# if it does not stop within 30 s of the interrupt.
wait_cp() {
  local deadline=$((SECONDS + 30))
  while kill -0 "$CP_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if kill -0 "$CP_PID" 2>/dev/null; then
    kill -KILL "$CP_PID" 2>/dev/null || true
    wait "$CP_PID" 2>/dev/null || true
    fail "skyrun s3 cp did not stop within 30 s of SIGINT"
  fi
  CP_STATUS=0
  wait "$CP_PID" || CP_STATUS=$?
}

proxy_saw() { grep -q -- "$1" "$PROXY_LOG" 2>/dev/null; }
has_files() { [ -n "$(find "$@" -mindepth 1 -print -quit)" ]; }

test_interrupted_multipart_upload_is_aborted() {
  local b; b=$(fresh_bucket int-up)
  random_file "$WORK/big.bin" $((40 * MiB))
  # 64 KiB per 100 ms per connection: minutes for the whole file.
  start_proxy --delay-ms 100
  start_cp "$WORK/big.bin" "s3://$b/big.bin"
  wait_for 60 proxy_saw "partNumber="           # parts are in flight
  kill -INT "$CP_PID"
  wait_cp
  [ "$CP_STATUS" -ne 0 ] || fail "an interrupted upload exited 0"
  grep -qi "interrupt" "$WORK/err" || fail "stderr does not say it was interrupted: $(cat "$WORK/err")"
  expect_exit 254 awss3 s3api head-object --bucket "$b" --key big.bin
  expect_uploads_closed_by_client
  expect_no_uploads_left_on_server "$b"
}

test_interrupted_download_leaves_no_file() {
  local b; b=$(fresh_bucket int-down)
  random_file "$WORK/big.bin" $((30 * MiB))
  awscp "$WORK/big.bin" "s3://$b/big.bin"
  start_proxy --delay-ms 100
  mkdir -p "$WORK/dl"
  start_cp "s3://$b/big.bin" "$WORK/dl/big.bin"
  wait_for 60 proxy_saw "GET /$b/big.bin"
  # Let body bytes arrive so a temp file exists, then interrupt.
  wait_for 60 has_files "$WORK/dl" "$TMPDIR"
  kill -INT "$CP_PID"
  wait_cp
  [ "$CP_STATUS" -ne 0 ] || fail "an interrupted download exited 0"
  grep -qi "interrupt" "$WORK/err" || fail "stderr does not say it was interrupted: $(cat "$WORK/err")"
  [ -z "$(ls -A "$WORK/dl")" ] || fail "left in the destination folder: $(ls -A "$WORK/dl")"
  [ -z "$(ls -A "$TMPDIR")" ] || fail "left in TMPDIR: $(ls -A "$TMPDIR")"
}

test_case "Ctrl-C during a multipart upload exits non-zero, aborts it and leaves no object" \
  test_interrupted_multipart_upload_is_aborted
test_case "Ctrl-C during a download exits non-zero and leaves no file and no temp file" \
  test_interrupted_download_leaves_no_file
finish
