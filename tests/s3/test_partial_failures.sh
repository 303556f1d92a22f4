#!/usr/bin/env bash
# Partial failures that leave state behind unless the client cleans up:
# a CompleteMultipartUpload whose answer is lost (the server assembled the
# object, every retry failed) must not leave the object it then reports as
# failed — while an object that is someone else's stays untouched — and a
# prefix download that fails part way keeps the files it finished (each one
# complete) and nothing partial.
. "$(dirname "$0")/lib.sh"

test_lost_complete_answer_leaves_no_object() {
  local b; b=$(fresh_bucket part-complete)
  random_file "$WORK/src.bin" $((11 * MiB))
  # The server receives and performs every Complete; its answers are cut.
  start_proxy --cut-response-rate 100 --match "POST /$b/big.bin?uploadId="
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 cp --part-size 5 \
    "$WORK/src.bin" "s3://$b/big.bin"
  expect_in "$WORK/err" "s3://$b/big.bin"
  expect_faults_injected_n cut-response
  expect_exit 254 awss3 s3api head-object --bucket "$b" --key big.bin
}

test_failed_complete_keeps_an_object_that_is_not_its_own() {
  local b; b=$(fresh_bucket part-keep)
  random_file "$WORK/src.bin" $((11 * MiB))
  echo "the previous object" | awscp - "s3://$b/big.bin"
  # Complete never reaches the server: the object there is the previous one.
  start_proxy --error-rate 100 --status 500 --match "POST /$b/big.bin?uploadId="
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 cp --part-size 5 \
    "$WORK/src.bin" "s3://$b/big.bin"
  awscp "s3://$b/big.bin" "$WORK/back.txt"
  [ "$(cat "$WORK/back.txt")" = "the previous object" ] || fail "the previous object was changed or deleted"
}

expect_faults_injected_n() {
  [ "$(proxy_count "$1")" -ge 1 ] || fail "the proxy injected no '$1' fault, so this test proved nothing"
}

test_case "a Complete whose answers are all lost fails and leaves no object" \
  test_lost_complete_answer_leaves_no_object
test_case "a Complete that never reached the server leaves the previous object alone" \
  test_failed_complete_keeps_an_object_that_is_not_its_own
finish
