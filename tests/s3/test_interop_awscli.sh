#!/usr/bin/env bash
# Interop with a peer client: what skyrun uploads, aws-cli downloads byte for
# byte, and the reverse — single PUTs, multipart uploads, directory trees and
# awkward key names. Multipart uploads go through a pass-through fault proxy
# whose log shows they really were multipart (s3rver gives multipart objects
# a plain MD5 ETag, not the "-N" form S3 uses, so the ETag cannot tell).
. "$(dirname "$0")/lib.sh"

# Fails unless the proxy saw a multipart upload of at least N parts, completed.
expect_multipart_upload() {
  [ "$(proxy_parts)" -ge "$1" ] || fail "expected >= $1 UploadPart requests, the proxy saw $(proxy_parts)"
  expect_uploads_closed_by_client
}

test_skyrun_multipart_upload_is_read_by_awscli() {
  local b; b=$(fresh_bucket interop-sky-mp)
  random_file "$WORK/mp.bin" $((25 * MiB + 4321))
  start_proxy
  sky_lua "$PROXY_ENDPOINT" "$b" "$WORK/mp.bin" <<'EOF'
local sky = require "sky"
local endpoint, bucket, path = ...
local st <close> = sky.storage.s3 { endpoint = endpoint, region = "us-east-1", path_style = true,
  access_key = os.getenv("AWS_ACCESS_KEY_ID"), secret_key = os.getenv("AWS_SECRET_ACCESS_KEY"), part_size = 5 * 1024 * 1024, parallel = 4 }
st:upload(bucket, path, { key = "mp.bin" })
EOF
  expect_multipart_upload 6
  awscp "s3://$b/mp.bin" "$WORK/mp.aws"
  cmp "$WORK/mp.bin" "$WORK/mp.aws"
}

test_skyrun_cli_multipart_upload_is_read_by_awscli() {
  local b; b=$(fresh_bucket interop-cli-mp)
  random_file "$WORK/cli.bin" $((20 * MiB + 1))
  start_proxy
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 cp "$WORK/cli.bin" "s3://$b/cli.bin"
  expect_multipart_upload 2
  awscp "s3://$b/cli.bin" "$WORK/cli.aws"
  cmp "$WORK/cli.bin" "$WORK/cli.aws"
}

test_awscli_multipart_upload_is_read_by_skyrun() {
  local b; b=$(fresh_bucket interop-aws-mp)
  random_file "$WORK/aws.bin" $((23 * MiB + 99))
  start_proxy
  "$AWS_CLI" --endpoint-url "$PROXY_ENDPOINT" s3 cp --only-show-errors "$WORK/aws.bin" "s3://$b/aws.bin"
  expect_multipart_upload 3                       # aws-cli: 8 MiB parts above 8 MiB
  sky_s3 cp "s3://$b/aws.bin" "$WORK/aws.sky"
  cmp "$WORK/aws.bin" "$WORK/aws.sky"
  sky_lua "$S3_ENDPOINT" "$b" "$WORK/aws.lua" <<'EOF'
local sky = require "sky"
local endpoint, bucket, path = ...
local st <close> = sky.storage.s3 { endpoint = endpoint, region = "us-east-1", path_style = true,
  access_key = os.getenv("AWS_ACCESS_KEY_ID"), secret_key = os.getenv("AWS_SECRET_ACCESS_KEY"), part_size = 5 * 1024 * 1024, parallel = 4 }
st:download(bucket, "aws.bin", path)      -- parallel ranged GETs of 5 MiB
EOF
  cmp "$WORK/aws.bin" "$WORK/aws.lua"
}

test_small_objects_cross_both_ways() {
  local b; b=$(fresh_bucket interop-small)
  printf 'from skyrun\n' >"$WORK/s.txt"
  sky_s3 cp "$WORK/s.txt" "s3://$b/s.txt"
  [ "$(awss3 s3 cp s3://"$b"/s.txt -)" = "from skyrun" ] || fail "aws-cli read different bytes"
  printf 'from aws-cli\n' | awscp - "s3://$b/a.txt"
  sky_s3 cp "s3://$b/a.txt" "$WORK/a.txt"
  [ "$(cat "$WORK/a.txt")" = "from aws-cli" ] || fail "skyrun read different bytes"
  : >"$WORK/empty"
  sky_s3 cp "$WORK/empty" "s3://$b/empty"
  [ "$(awss3 s3api head-object --bucket "$b" --key empty --query ContentLength --output text)" = 0 ] ||
    fail "the empty object is not empty"
}

test_directory_trees_cross_both_ways() {
  local b; b=$(fresh_bucket interop-tree)
  mkdir -p "$WORK/tree/x/y"
  for i in 1 2 3; do random_file "$WORK/tree/x/y/f$i" $((i * 70000)); done
  echo root >"$WORK/tree/root.txt"
  sky_s3 cp -r "$WORK/tree" "s3://$b/from-sky/"
  awss3 s3 cp --recursive --only-show-errors "s3://$b/from-sky/" "$WORK/by-aws"
  diff -r "$WORK/tree" "$WORK/by-aws"
  awss3 s3 cp --recursive --only-show-errors "$WORK/tree" "s3://$b/from-aws/"
  sky_s3 cp -r "s3://$b/from-aws/" "$WORK/by-sky"
  diff -r "$WORK/tree" "$WORK/by-sky"
}

test_awkward_key_names_cross_both_ways() {
  local b k; b=$(fresh_bucket interop-keys)
  for k in "with space.txt" "plus+sign.txt" "ünïcødé.txt" "a=b&c.txt" "percent%20.txt" "tilde~.txt"; do
    printf '%s' "$k" >"$WORK/key"
    sky_s3 cp "$WORK/key" "s3://$b/sky/$k"
    [ "$(awss3 s3 cp "s3://$b/sky/$k" -)" = "$k" ] || fail "aws-cli read the wrong bytes for key '$k'"
    awscp "$WORK/key" "s3://$b/aws/$k"
    sky_s3 cp "s3://$b/aws/$k" "$WORK/back"
    [ "$(cat "$WORK/back")" = "$k" ] || fail "skyrun read the wrong bytes for key '$k'"
  done
}

test_case "a multipart upload from Lua (5 MiB parts) is downloaded by aws-cli byte for byte" \
  test_skyrun_multipart_upload_is_read_by_awscli
test_case "a multipart upload by skyrun s3 cp is downloaded by aws-cli byte for byte" \
  test_skyrun_cli_multipart_upload_is_read_by_awscli
test_case "a multipart upload by aws-cli is downloaded by skyrun (CLI and ranged Lua) byte for byte" \
  test_awscli_multipart_upload_is_read_by_skyrun
test_case "small and empty objects cross between skyrun and aws-cli both ways" test_small_objects_cross_both_ways
test_case "directory trees cross between skyrun and aws-cli both ways" test_directory_trees_cross_both_ways
test_case "keys with spaces, +, =, &, %, ~ and UTF-8 cross both ways" test_awkward_key_names_cross_both_ways
finish
