#!/usr/bin/env bash
# Transfers through a fault-injecting proxy (tests/support/faultproxy.c, a
# real TCP peer between skyrun and s3rver): with a share of requests answered
# 500/503 or cut mid-request/mid-response, multipart uploads and ranged
# downloads still complete byte-identical; when every part or every GET fails,
# the transfer fails clearly and leaves nothing partial — no object, no
# multipart upload left open by the client, no destination file, no temp file.
. "$(dirname "$0")/lib.sh"

# A Lua transfer through ENDPOINT with 5 MiB parts, generous retries (12 attempts):
#   lua_transfer ENDPOINT up|down BUCKET KEY PATH
lua_transfer() {
  sky_lua "$@" <<'EOF'
local sky = require "sky"
local endpoint, dir, bucket, key, path = ...
local st <close> = sky.storage.s3 { endpoint = endpoint, region = "us-east-1", path_style = true,
  access_key = os.getenv("AWS_ACCESS_KEY_ID"), secret_key = os.getenv("AWS_SECRET_ACCESS_KEY"), part_size = 5 * 1024 * 1024, parallel = 4,
  retries = 11 }
if dir == "up" then st:upload(bucket, path, { key = key }) else st:download(bucket, key, path) end
EOF
}

# Fails unless the proxy really injected faults of the given kind.
expect_faults_injected() {
  local n; n=$(proxy_count "$1")
  [ "$n" -ge 1 ] || fail "the proxy injected no '$1' fault, so this test proved nothing"
  echo "    ($n '$1' faults injected out of $(wc -l <"$PROXY_LOG") requests)"
}

# Nothing but complete files in a directory: no temp or partial files.
expect_only_files() {
  local dir=$1; shift
  local have want
  have=$(cd "$dir" && ls -A | sort | tr '\n' ' ')
  want=$(printf '%s\n' "$@" | sed '/^$/d' | sort | tr '\n' ' ')
  [ "$have" = "$want" ] || fail "files in $dir: '$have', expected '$want'"
}

test_errors_on_30_percent_of_requests_do_not_corrupt_transfers() {
  local b; b=$(fresh_bucket fault-5xx)
  random_file "$WORK/src.bin" $((26 * MiB + 77))
  start_proxy --error-rate 30 --status 500,503 --seed 3
  lua_transfer "$PROXY_ENDPOINT" up "$b" big.bin "$WORK/src.bin"
  mkdir -p "$WORK/dl-5xx"
  lua_transfer "$PROXY_ENDPOINT" down "$b" big.bin "$WORK/dl-5xx/big.bin"
  expect_faults_injected error
  awscp "s3://$b/big.bin" "$WORK/aws.bin"
  cmp "$WORK/src.bin" "$WORK/aws.bin"
  cmp "$WORK/src.bin" "$WORK/dl-5xx/big.bin"
  expect_only_files "$WORK/dl-5xx" big.bin
  expect_uploads_closed_by_client
  # Injected errors never reach the server, so nothing may be left open there.
  [ "$(server_pending_uploads "$b")" = 0 ] || fail "multipart uploads left open on the server"
}

test_cut_connections_on_20_percent_of_requests_do_not_corrupt_transfers() {
  local b; b=$(fresh_bucket fault-cut)
  random_file "$WORK/src.bin" $((21 * MiB + 5))
  start_proxy --cut-request-rate 10 --cut-response-rate 10 --seed 11
  lua_transfer "$PROXY_ENDPOINT" up "$b" cut.bin "$WORK/src.bin"
  mkdir -p "$WORK/dl-cut"
  lua_transfer "$PROXY_ENDPOINT" down "$b" cut.bin "$WORK/dl-cut/cut.bin"
  [ $(($(proxy_count cut-request) + $(proxy_count cut-response))) -ge 1 ] ||
    fail "the proxy cut no connection, so this test proved nothing"
  awscp "s3://$b/cut.bin" "$WORK/aws.bin"
  cmp "$WORK/src.bin" "$WORK/aws.bin"
  cmp "$WORK/src.bin" "$WORK/dl-cut/cut.bin"
  expect_only_files "$WORK/dl-cut" cut.bin
  expect_uploads_closed_by_client
}

test_cli_copes_with_faults_at_its_default_retries() {
  local b; b=$(fresh_bucket fault-cli)
  random_file "$WORK/src.bin" $((17 * MiB))
  # 10% errors: the default 4 retries (5 attempts) leave a 1e-5 chance per request to fail.
  start_proxy --error-rate 10 --seed 5
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 cp "$WORK/src.bin" "s3://$b/cli.bin"
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 cp "s3://$b/cli.bin" "$WORK/cli.back"
  expect_faults_injected error
  cmp "$WORK/src.bin" "$WORK/cli.back"
}

test_upload_whose_parts_are_all_cut_fails_and_leaves_nothing() {
  local b; b=$(fresh_bucket fault-upcut)
  random_file "$WORK/src.bin" $((20 * MiB))
  # Only part uploads are cut: CreateMultipartUpload and the abort get through,
  # so the test sees whether skyrun aborts what it started.
  start_proxy --cut-request-rate 100 --match "partNumber="
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 cp "$WORK/src.bin" "s3://$b/never.bin"
  expect_in "$WORK/err" "s3://$b/never.bin"
  expect_faults_injected cut-request
  grep -q "DELETE /$b/never.bin?uploadId=" "$PROXY_LOG" || fail "no AbortMultipartUpload was sent"
  expect_uploads_closed_by_client
  expect_no_uploads_left_on_server "$b"
  expect_exit 254 awss3 s3api head-object --bucket "$b" --key never.bin
}

test_small_upload_always_cut_fails_and_creates_no_object() {
  local b; b=$(fresh_bucket fault-putcut)
  echo "small" >"$WORK/small.txt"
  # Cut inside the request head: s3rver (unlike S3) stores the truncated body
  # of a PUT whose connection dies, which would blame the client for the server.
  start_proxy --cut-request-rate 100 --cut-in head
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 cp "$WORK/small.txt" "s3://$b/small.txt"
  expect_in "$WORK/err" "s3://$b/small.txt"
  expect_exit 254 awss3 s3api head-object --bucket "$b" --key small.txt
}

test_download_whose_gets_are_all_cut_leaves_no_file() {
  local b; b=$(fresh_bucket fault-dlcut)
  random_file "$WORK/src.bin" $((12 * MiB))
  awscp "$WORK/src.bin" "s3://$b/obj.bin"
  start_proxy --cut-response-rate 100 --match "GET /$b/obj.bin"
  mkdir -p "$WORK/dl-allcut"
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 cp "s3://$b/obj.bin" "$WORK/dl-allcut/obj.bin"
  expect_in "$WORK/err" "s3://$b/obj.bin"
  expect_faults_injected cut-response
  expect_only_files "$WORK/dl-allcut"
  expect_only_files "$TMPDIR"
}

test_failed_download_leaves_an_existing_destination_untouched() {
  local b; b=$(fresh_bucket fault-keep)
  random_file "$WORK/src.bin" $((11 * MiB))
  awscp "$WORK/src.bin" "s3://$b/obj.bin"
  mkdir -p "$WORK/dl-keep"
  echo "previous version" >"$WORK/dl-keep/obj.bin"
  start_proxy --cut-response-rate 100 --match "GET /$b/obj.bin"
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 cp "s3://$b/obj.bin" "$WORK/dl-keep/obj.bin"
  [ "$(cat "$WORK/dl-keep/obj.bin")" = "previous version" ] || fail "the existing destination was changed"
  expect_only_files "$WORK/dl-keep" obj.bin
}

test_case "30% of requests answered 500/503: multipart upload and ranged download stay byte-identical" \
  test_errors_on_30_percent_of_requests_do_not_corrupt_transfers
test_case "20% of connections cut mid-request or mid-response: transfers stay byte-identical" \
  test_cut_connections_on_20_percent_of_requests_do_not_corrupt_transfers
test_case "skyrun s3 cp completes through 10% errors with its default retries" \
  test_cli_copes_with_faults_at_its_default_retries
test_case "an upload whose every part is cut fails, is aborted by the client, and leaves no object" \
  test_upload_whose_parts_are_all_cut_fails_and_leaves_nothing
test_case "a small upload whose every request is cut fails and creates no object" \
  test_small_upload_always_cut_fails_and_creates_no_object
test_case "a download whose every GET is cut fails and leaves no file and no temp file" \
  test_download_whose_gets_are_all_cut_leaves_no_file
test_case "a failed download leaves an existing destination file untouched" \
  test_failed_download_leaves_an_existing_destination_untouched
finish
