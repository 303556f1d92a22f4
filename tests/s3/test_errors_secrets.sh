#!/usr/bin/env bash
# Failures read clearly and leak nothing: NoSuchBucket, NoSuchKey,
# InvalidAccessKeyId, SignatureDoesNotMatch (answered by the fault proxy, since
# s3rver does not check signatures) and an unreachable endpoint each make
# `skyrun s3` exit 1 with a message naming the bucket and key; and the secret
# key never appears on stdout, stderr (debug logging included) or in any file
# the run leaves behind — from the CLI or from a Lua script.
. "$(dirname "$0")/lib.sh"

SECRET="SkyrunTestSecret-0c8f1e2d9b7a"

test_no_such_bucket_names_the_bucket_and_key() {
  local b; b=$(bucket_name err-nobucket)
  expect_exit 1 sky_s3 cp "s3://$b/some/key" "$WORK/x"
  expect_in "$WORK/err" "NoSuchBucket"
  expect_in "$WORK/err" "s3://$b/some/key"
}

test_no_such_key_names_the_bucket_and_key() {
  local b; b=$(fresh_bucket err-nokey)
  expect_exit 1 sky_s3 cp "s3://$b/missing.bin" "$WORK/x"
  expect_in "$WORK/err" "NoSuchKey"
  expect_in "$WORK/err" "s3://$b/missing.bin"
}

test_invalid_access_key_names_the_bucket() {
  local b; b=$(fresh_bucket err-badkey)
  echo x >"$WORK/x"
  expect_exit 1 env AWS_ACCESS_KEY_ID=NOSUCHACCESSKEY AWS_SECRET_ACCESS_KEY="$SECRET" \
    AWS_ENDPOINT_URL="$S3_ENDPOINT" "$SKYRUN" s3 cp "$WORK/x" "s3://$b/k"
  expect_in "$WORK/err" "InvalidAccessKeyId"
  expect_in "$WORK/err" "s3://$b/k"
  expect_not_in "$WORK/err" "$SECRET"
}

test_signature_does_not_match_is_reported_not_retried_forever() {
  local b; b=$(fresh_bucket err-sig)
  echo x | awscp - "s3://$b/k"
  # GETs only: a HEAD answer has no body, so it cannot carry the error code.
  start_proxy --error-rate 100 --status 403 --match "GET "
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 cp "s3://$b/k" "$WORK/k"
  expect_in "$WORK/err" "SignatureDoesNotMatch"
  expect_in "$WORK/err" "s3://$b/k"
  [ "$(proxy_count error)" -le 2 ] || fail "a 403 was retried $(proxy_count error) times: 4xx is final"
  [ ! -e "$WORK/k" ] || fail "a failed download created its destination"
}

test_unreachable_endpoint_names_the_endpoint_bucket_and_key() {
  # Port 1 on loopback: nothing listens there, the connection is refused.
  expect_exit 1 env AWS_ENDPOINT_URL=http://127.0.0.1:1 "$SKYRUN" s3 cp "s3://far-bucket/far/key" "$WORK/far"
  expect_in "$WORK/err" "127.0.0.1:1"
  expect_in "$WORK/err" "s3://far-bucket/far/key"
  [ ! -e "$WORK/far" ] || fail "a failed download created its destination"
}

test_lua_errors_name_operation_bucket_and_key() {
  local b; b=$(fresh_bucket err-lua)
  expect_exit 1 sky_lua "$S3_ENDPOINT" "$b" <<'EOF'
local sky = require "sky"
local endpoint, bucket = ...
local st <close> = sky.storage.s3 { endpoint = endpoint, region = "us-east-1", path_style = true,
  access_key = "S3RVER", secret_key = "S3RVER" }
st:get(bucket, "nope/missing.txt")
EOF
  expect_in "$WORK/err" "NoSuchKey"
  expect_in "$WORK/err" "$b"
  expect_in "$WORK/err" "nope/missing.txt"
  expect_in "$WORK/err" ".lua:5"        # the script line that failed
}

# Every file under the test's scratch dir (its HOME, TMPDIR and outputs) and
# the server's own data; the credentials file we wrote ourselves is excluded.
expect_secret_nowhere() {
  local leaks
  leaks=$(grep -rlF -- "$SECRET" "$WORK" "$S3RVER_DATA" 2>/dev/null |
          grep -v -e "^$WORK/home/.aws/credentials$" -e "^$WORK/secret-script.lua$" || true)
  [ -z "$leaks" ] || fail "the secret key was written to: $leaks"
}

test_secret_never_appears_in_output_or_files() {
  local b; b=$(fresh_bucket err-secret)
  random_file "$WORK/payload" $((9 * MiB))         # multipart: several signed requests
  export AWS_SECRET_ACCESS_KEY=$SECRET SKYRUN_LOG=debug AWS_ENDPOINT_URL=$S3_ENDPOINT
  # A successful run with debug logging, then failing runs of each kind.
  "$SKYRUN" -v s3 cp "$WORK/payload" "s3://$b/payload" \
    >"$WORK/run1.out" 2>"$WORK/run1.err"
  "$SKYRUN" -v s3 cp "s3://$b/missing" "$WORK/dl" \
    >"$WORK/run2.out" 2>"$WORK/run2.err" && fail "downloading a missing key succeeded"
  AWS_ACCESS_KEY_ID=WRONGKEY "$SKYRUN" -v s3 ls "s3://$b/" \
    >"$WORK/run3.out" 2>"$WORK/run3.err" && fail "a wrong access key was accepted"
  AWS_ENDPOINT_URL=http://127.0.0.1:1 "$SKYRUN" -v s3 ls "s3://$b/" \
    >"$WORK/run4.out" 2>"$WORK/run4.err" && fail "an unreachable endpoint worked"
  # The same secret from ~/.aws/credentials (a profile) and from a Lua script.
  mkdir -p "$HOME/.aws"
  printf '[leaky]\naws_access_key_id = NOTAKEY\naws_secret_access_key = %s\n' "$SECRET" \
    >"$HOME/.aws/credentials"
  unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
  AWS_PROFILE=leaky "$SKYRUN" -v s3 ls "s3://$b/" \
    >"$WORK/run5.out" 2>"$WORK/run5.err" && fail "a wrong access key from a profile was accepted"
  cat >"$WORK/secret-script.lua" <<EOF
local sky = require "sky"
local st = sky.storage.s3 { endpoint = "$S3_ENDPOINT", region = "us-east-1", path_style = true,
  access_key = "NOTAKEY", secret_key = "$SECRET" }
print(st)
st:put("$b", "k", "v")
EOF
  "$SKYRUN" -v "$WORK/secret-script.lua" >"$WORK/run6.out" 2>"$WORK/run6.err" &&
    fail "a wrong access key from Lua was accepted"
  expect_in "$WORK/run3.err" "InvalidAccessKeyId"
  expect_in "$WORK/run5.err" "InvalidAccessKeyId"
  expect_in "$WORK/run6.err" "InvalidAccessKeyId"
  expect_secret_nowhere
}

test_case "NoSuchBucket exits 1 naming the bucket and key" test_no_such_bucket_names_the_bucket_and_key
test_case "NoSuchKey exits 1 naming the bucket and key" test_no_such_key_names_the_bucket_and_key
test_case "an unknown access key exits 1 with InvalidAccessKeyId naming the bucket, without the secret" \
  test_invalid_access_key_names_the_bucket
test_case "SignatureDoesNotMatch is reported with bucket and key and not retried" \
  test_signature_does_not_match_is_reported_not_retried_forever
test_case "an unreachable endpoint exits 1 naming the endpoint, bucket and key" \
  test_unreachable_endpoint_names_the_endpoint_bucket_and_key
test_case "a Lua storage error names the code, bucket, key and the script line" \
  test_lua_errors_name_operation_bucket_and_key
test_case "the secret key appears in no output (debug logs included) and no file a run leaves" \
  test_secret_never_appears_in_output_or_files
finish
