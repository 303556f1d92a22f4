#!/usr/bin/env bash
# `skyrun s3` from the shell against a real s3rver: every subcommand does what
# its name says (checked with aws-cli, a peer client, where it matters),
# listings and prefix deletes go past 1,000 keys, and exit statuses are
# 0 success, 1 failure, 2 usage error.
. "$(dirname "$0")/lib.sh"

test_mb_creates_a_bucket_and_rb_removes_it() {
  local b; b=$(bucket_name cli-mb)
  sky_s3 mb "s3://$b"
  awss3 s3api head-bucket --bucket "$b"
  sky_s3 rb "s3://$b"
  expect_exit 254 awss3 s3api head-bucket --bucket "$b"
}

test_cp_uploads_and_downloads_a_file_byte_for_byte() {
  local b; b=$(fresh_bucket cli-cp)
  random_file "$WORK/f.bin" $((3 * MiB + 17))
  sky_s3 cp "$WORK/f.bin" "s3://$b/dir/f.bin"
  awscp "s3://$b/dir/f.bin" "$WORK/f.aws"
  cmp "$WORK/f.bin" "$WORK/f.aws"
  sky_s3 cp "s3://$b/dir/f.bin" "$WORK/f.sky"
  cmp "$WORK/f.bin" "$WORK/f.sky"
}

test_cp_into_a_directory_keeps_the_file_name() {
  local b; b=$(fresh_bucket cli-cpdir)
  echo "hello" >"$WORK/name.txt"
  sky_s3 cp "$WORK/name.txt" "s3://$b/folder/"
  awss3 s3api head-object --bucket "$b" --key folder/name.txt >/dev/null
  mkdir -p "$WORK/into"
  sky_s3 cp "s3://$b/folder/name.txt" "$WORK/into/"
  cmp "$WORK/name.txt" "$WORK/into/name.txt"
}

test_ls_lists_a_prefix_and_ls_r_lists_nested_keys() {
  local b; b=$(fresh_bucket cli-ls)
  for k in top.txt logs/a.txt logs/deep/b.txt other/c.txt; do echo "$k" | awscp - "s3://$b/$k"; done
  sky_s3 ls "s3://$b/logs/" >"$WORK/ls"
  expect_in "$WORK/ls" "a.txt"
  expect_in "$WORK/ls" "deep/"
  expect_not_in "$WORK/ls" "b.txt"
  expect_not_in "$WORK/ls" "c.txt"
  sky_s3 ls -r "s3://$b/logs/" >"$WORK/lsr"
  expect_in "$WORK/lsr" "logs/a.txt"
  expect_in "$WORK/lsr" "logs/deep/b.txt"
  expect_not_in "$WORK/lsr" "other/c.txt"
  [ "$(grep -c . "$WORK/lsr")" -eq 2 ] || fail "ls -r printed $(grep -c . "$WORK/lsr") lines for 2 keys"
}

test_cp_r_round_trips_a_directory_tree() {
  local b; b=$(fresh_bucket cli-tree)
  mkdir -p "$WORK/tree/a/b" "$WORK/tree/c"
  random_file "$WORK/tree/a/b/deep.bin" 100000
  echo top >"$WORK/tree/top.txt"
  : >"$WORK/tree/c/empty"
  echo "spaces" >"$WORK/tree/c/with space.txt"
  sky_s3 cp -r "$WORK/tree" "s3://$b/snap/"
  awss3 s3 ls --recursive "s3://$b/snap/" >"$WORK/aws-ls"
  [ "$(grep -c . "$WORK/aws-ls")" -eq 4 ] || fail "expected 4 objects, aws-cli sees: $(cat "$WORK/aws-ls")"
  sky_s3 cp -r "s3://$b/snap/" "$WORK/back"
  diff -r "$WORK/tree" "$WORK/back"
}

test_ls_and_rm_r_handle_more_than_1000_keys() {
  local b i; b=$(fresh_bucket cli-many)
  mkdir -p "$WORK/many"
  for i in $(seq -w 1 1003); do echo "$i" >"$WORK/many/k$i"; done
  awss3 s3 cp --recursive --only-show-errors "$WORK/many" "s3://$b/many/"
  echo keep | awscp - "s3://$b/keep.txt"
  sky_s3 ls -r "s3://$b/many/" >"$WORK/ls"
  [ "$(grep -c 'many/k' "$WORK/ls")" -eq 1003 ] || fail "ls -r listed $(grep -c 'many/k' "$WORK/ls") of 1003 keys"
  sky_s3 rm -r "s3://$b/many/"
  awss3 s3 ls --recursive "s3://$b/" >"$WORK/left"
  expect_not_in "$WORK/left" "many/"
  expect_in "$WORK/left" "keep.txt"
}

test_rm_removes_one_key_and_leaves_its_neighbours() {
  local b; b=$(fresh_bucket cli-rm)
  echo 1 | awscp - "s3://$b/a/1"
  echo 2 | awscp - "s3://$b/a/2"
  sky_s3 rm "s3://$b/a/1"
  expect_exit 254 awss3 s3api head-object --bucket "$b" --key a/1
  awss3 s3api head-object --bucket "$b" --key a/2 >/dev/null
}

test_presign_prints_a_url_curl_can_fetch() {
  local b url; b=$(fresh_bucket cli-presign)
  echo "shared via url" | awscp - "s3://$b/share.txt"
  url=$(sky_s3 presign "s3://$b/share.txt")
  [[ "$url" == http://127.0.0.1:*X-Amz-Signature=* ]] || fail "not a presigned URL: $url"
  [ "$(curl -sf --max-time 20 "$url")" = "shared via url" ] || fail "curl did not get the object"
}

test_endpoint_flag_overrides_the_environment() {
  local b; b=$(fresh_bucket cli-endpoint)
  echo x | awscp - "s3://$b/x"
  AWS_ENDPOINT_URL=http://127.0.0.1:1 "$SKYRUN" s3 ls --endpoint "$S3_ENDPOINT" "s3://$b/" >"$WORK/ls"
  expect_in "$WORK/ls" "x"
}

test_usage_errors_exit_2_and_name_the_problem() {
  expect_exit 2 sky_s3 frobnicate s3://x/y
  expect_in "$WORK/err" "frobnicate"
  expect_exit 2 sky_s3 cp "$WORK/only-one-argument"
  expect_exit 2 sky_s3 ls not-an-s3-url
  expect_in "$WORK/err" "not-an-s3-url"
}

test_retries_flag_counts_the_attempts_after_the_first() {
  echo x >"$WORK/r.txt"
  expect_exit 1 env AWS_ENDPOINT_URL=http://127.0.0.1:1 "$SKYRUN" s3 cp --retries 2 "$WORK/r.txt" s3://b-retries/r.txt
  expect_in "$WORK/err" "after 3 attempts"
  expect_exit 1 env AWS_ENDPOINT_URL=http://127.0.0.1:1 "$SKYRUN" s3 cp --retries 0 "$WORK/r.txt" s3://b-retries/r.txt
  expect_not_in "$WORK/err" "attempts"
  expect_exit 1 env AWS_ENDPOINT_URL=http://127.0.0.1:1 "$SKYRUN" s3 cp "$WORK/r.txt" s3://b-retries/r.txt
  expect_in "$WORK/err" "after 5 attempts"
  expect_exit 2 sky_s3 cp --retries -1 "$WORK/r.txt" s3://b-retries/r.txt
  expect_in "$WORK/err" "--retries"
}

test_a_missing_key_exits_1_naming_bucket_and_key() {
  local b; b=$(fresh_bucket cli-nokey)
  expect_exit 1 sky_s3 cp "s3://$b/no/such/key" "$WORK/nokey"
  expect_in "$WORK/err" "$b"
  expect_in "$WORK/err" "no/such/key"
  expect_in "$WORK/err" "NoSuchKey"
  [ ! -e "$WORK/nokey" ] || fail "a failed download created its destination"
}

test_case "mb creates a bucket aws-cli sees, rb removes it" test_mb_creates_a_bucket_and_rb_removes_it
test_case "cp uploads a file aws-cli reads back, and downloads it byte for byte" \
  test_cp_uploads_and_downloads_a_file_byte_for_byte
test_case "cp to a destination ending in / keeps the file name" test_cp_into_a_directory_keeps_the_file_name
test_case "ls lists one level of a prefix, ls -r every key under it" test_ls_lists_a_prefix_and_ls_r_lists_nested_keys
test_case "cp -r uploads a directory tree and downloads it back identical" test_cp_r_round_trips_a_directory_tree
test_case "ls -r lists and rm -r deletes a prefix of more than 1,000 keys" test_ls_and_rm_r_handle_more_than_1000_keys
test_case "rm removes one key and leaves its neighbours" test_rm_removes_one_key_and_leaves_its_neighbours
test_case "presign prints a URL that curl can fetch without credentials" test_presign_prints_a_url_curl_can_fetch
test_case "--endpoint overrides AWS_ENDPOINT_URL" test_endpoint_flag_overrides_the_environment
test_case "usage errors exit 2 and name what was wrong" test_usage_errors_exit_2_and_name_the_problem
test_case "--retries N makes 1 + N attempts; the default is 4 retries" \
  test_retries_flag_counts_the_attempts_after_the_first
test_case "a missing key exits 1 naming bucket, key and NoSuchKey, and creates no file" \
  test_a_missing_key_exits_1_naming_bucket_and_key
finish
