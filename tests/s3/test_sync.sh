#!/usr/bin/env bash
# `skyrun s3 sync` and `skyrun s3 mv` against s3rver: each direction (folder
# to prefix, prefix to folder, prefix to prefix), a second run that sends no
# transfer at all (seen in a pass-through proxy's request log), --delete,
# --dryrun changing nothing, --exclude/--include in order, interop with
# `aws s3 sync` both ways (a tree synced by one is up to date for the other),
# mv of files, objects and folders, and failures that name the object.
# tests/s3/test_storage_sync.lua covers st:sync from Lua; the planner's
# decisions are tests/unit/test_s3_sync.c's.
. "$(dirname "$0")/lib.sh"

[ -x "$AWS_CLI" ] || skip_all "aws-cli is not installed at $AWS_CLI (scripts/install-deps.sh)"

aws_sync() { "$AWS_CLI" --endpoint-url "$S3_ENDPOINT" s3 sync --no-progress "$@"; }

# A small tree whose files are an hour old: an upload is then always newer
# than its file (S3 times are whole seconds; local ones are not).
make_tree() {
  local dir=$1
  mkdir -p "$dir/d/e"
  printf 'alpha\n' >"$dir/a.txt"
  printf 'bravo\n' >"$dir/d/b.txt"
  random_file "$dir/d/e/c.bin" 70000
  printf 'log\n' >"$dir/d/x.log"
  find "$dir" -type f -exec touch -d '-1 hour' {} +
}

# Fails unless the proxy log shows no request that moves or removes an object:
# only listings (GET ?list-type=2) and nothing else.
expect_no_transfers() {
  local moved
  moved=$(awk '$2 != "GET" || $3 !~ /list-type=2/' "$PROXY_LOG")
  [ -z "$moved" ] || fail "a second run sent requests besides listings: $moved"
  [ -s "$PROXY_LOG" ] || fail "the proxy saw no request at all"
}

keys_of() { awss3 s3api list-objects-v2 --bucket "$1" --query 'Contents[].Key' --output text | tr '\t' '\n' | sort; }

test_folder_to_prefix_then_nothing() {
  local b; b=$(fresh_bucket sync-up)
  make_tree "$WORK/up"
  expect_exit 0 sky_s3 sync "$WORK/up" "s3://$b/pre"
  expect_in "$WORK/out" "upload: $WORK/up/a.txt to s3://$b/pre/a.txt"
  expect_in "$WORK/out" "upload: $WORK/up/d/e/c.bin to s3://$b/pre/d/e/c.bin"
  [ "$(keys_of "$b" | tr '\n' ' ')" = "pre/a.txt pre/d/b.txt pre/d/e/c.bin pre/d/x.log " ] ||
    fail "keys: $(keys_of "$b")"
  start_proxy
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 sync "$WORK/up" "s3://$b/pre/" >"$WORK/out2"
  [ ! -s "$WORK/out2" ] || fail "the second run printed: $(cat "$WORK/out2")"
  expect_no_transfers
  awscp "s3://$b/pre/d/e/c.bin" "$WORK/c.back"
  cmp "$WORK/up/d/e/c.bin" "$WORK/c.back"
}

test_prefix_to_folder_then_nothing() {
  local b; b=$(fresh_bucket sync-down)
  make_tree "$WORK/src"
  awss3 s3 cp --recursive --only-show-errors "$WORK/src" "s3://$b/p/"
  expect_exit 0 sky_s3 sync "s3://$b/p" "$WORK/down/new"
  expect_in "$WORK/out" "download: s3://$b/p/d/b.txt to $WORK/down/new/d/b.txt"
  diff -r "$WORK/src" "$WORK/down/new"
  local lm; lm=$(awss3 s3api head-object --bucket "$b" --key p/a.txt --query LastModified --output text)
  [ "$(stat -c %Y "$WORK/down/new/a.txt")" = "$(date -d "$lm" +%s)" ] ||
    fail "the file's mtime is not the object's LastModified ($lm)"
  [ -z "$(find "$WORK/down" -name '*.skyrun-tmp-*')" ] || fail "temp files left behind"
  start_proxy
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 sync "s3://$b/p/" "$WORK/down/new" >"$WORK/out2"
  [ ! -s "$WORK/out2" ] || fail "the second run printed: $(cat "$WORK/out2")"
  expect_no_transfers
}

test_prefix_to_prefix_then_nothing() {
  local b b2; b=$(fresh_bucket sync-s3s3); b2=$(fresh_bucket sync-s3s3-dst)
  make_tree "$WORK/s3s3"
  awss3 s3 cp --recursive --only-show-errors "$WORK/s3s3" "s3://$b/from/"
  printf 'not under from/\n' | awscp - "s3://$b/from-other/z"
  expect_exit 0 sky_s3 sync "s3://$b/from" "s3://$b2/to"
  expect_in "$WORK/out" "copy: s3://$b/from/a.txt to s3://$b2/to/a.txt"
  [ "$(keys_of "$b2" | tr '\n' ' ')" = "to/a.txt to/d/b.txt to/d/e/c.bin to/d/x.log " ] ||
    fail "keys: $(keys_of "$b2")"
  start_proxy
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 sync "s3://$b/from" "s3://$b2/to" >"$WORK/out2"
  [ ! -s "$WORK/out2" ] || fail "the second run printed: $(cat "$WORK/out2")"
  expect_no_transfers
}

test_large_and_small_files_together() {
  local b; b=$(fresh_bucket sync-large)
  make_tree "$WORK/big"
  random_file "$WORK/big/d/large.bin" $((11 * MiB + 123))
  touch -d '-1 hour' "$WORK/big/d/large.bin"
  start_proxy
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 sync --part-size 5 "$WORK/big" "s3://$b/l" >"$WORK/out"
  expect_in "$WORK/out" "upload: $WORK/big/d/large.bin to s3://$b/l/d/large.bin"
  [ "$(wc -l <"$WORK/out")" = 5 ] || fail "expected 5 uploads: $(cat "$WORK/out")"
  [ "$(proxy_parts)" -ge 3 ] || fail "the large file was not a multipart upload"
  expect_uploads_closed_by_client
  stop_proxy
  expect_exit 0 sky_s3 sync --part-size 5 "s3://$b/l" "$WORK/big-down"
  diff -r "$WORK/big" "$WORK/big-down"
  start_proxy
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 sync --part-size 5 "s3://$b/l" "$WORK/big-down" >"$WORK/out2"
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 sync --part-size 5 "$WORK/big" "s3://$b/l" >>"$WORK/out2"
  [ ! -s "$WORK/out2" ] || fail "the second runs printed: $(cat "$WORK/out2")"
  expect_no_transfers
  aws_sync "s3://$b/l" "$WORK/big-down" >"$WORK/aws"
  [ ! -s "$WORK/aws" ] || fail "aws s3 sync would download again: $(cat "$WORK/aws")"
}

test_delete_and_dryrun() {
  local b; b=$(fresh_bucket sync-delete)
  make_tree "$WORK/del"
  sky_s3 sync "$WORK/del" "s3://$b" >/dev/null
  rm "$WORK/del/a.txt"
  printf 'bravo, longer\n' >"$WORK/del/d/b.txt"
  start_proxy
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 sync --dryrun --delete "$WORK/del" "s3://$b" >"$WORK/dry"
  expect_in "$WORK/dry" "(dryrun) delete: s3://$b/a.txt"
  expect_in "$WORK/dry" "(dryrun) upload: $WORK/del/d/b.txt to s3://$b/d/b.txt"
  [ "$(wc -l <"$WORK/dry")" = 2 ] || fail "dry run printed: $(cat "$WORK/dry")"
  expect_no_transfers
  [ "$(awss3 s3 cp "s3://$b/d/b.txt" -)" = "bravo" ] || fail "the dry run changed d/b.txt"
  expect_exit 0 sky_s3 sync --delete "$WORK/del" "s3://$b"
  expect_in "$WORK/out" "delete: s3://$b/a.txt"
  [ "$(keys_of "$b" | tr '\n' ' ')" = "d/b.txt d/e/c.bin d/x.log " ] || fail "keys: $(keys_of "$b")"
  # Downloading with --delete removes local files the prefix lacks.
  mkdir -p "$WORK/local"
  printf 'extra\n' >"$WORK/local/extra.txt"
  expect_exit 0 sky_s3 sync --delete "s3://$b" "$WORK/local"
  expect_in "$WORK/out" "delete: $WORK/local/extra.txt"
  [ ! -e "$WORK/local/extra.txt" ] || fail "extra.txt was not deleted"
  diff -r "$WORK/del" "$WORK/local"
}

test_excludes_and_includes() {
  local b b2; b=$(fresh_bucket sync-filter); b2=$(fresh_bucket sync-filter2)
  make_tree "$WORK/f"
  printf 'keep me\n' | awscp - "s3://$b/old.log"
  expect_exit 0 sky_s3 sync --delete --exclude '*.log' --exclude 'd/e/*' "$WORK/f" "s3://$b"
  [ "$(keys_of "$b" | tr '\n' ' ')" = "a.txt d/b.txt old.log " ] || fail "keys: $(keys_of "$b")"
  expect_exit 0 sky_s3 sync --exclude '*' --include '*.txt' --include 'd/e/*' "$WORK/f" "s3://$b2"
  [ "$(keys_of "$b2" | tr '\n' ' ')" = "a.txt d/b.txt d/e/c.bin " ] || fail "keys: $(keys_of "$b2")"
  # The same filters give aws-cli the same answer: it finds nothing to do.
  aws_sync --exclude '*' --include '*.txt' --include 'd/e/*' "$WORK/f" "s3://$b2" >"$WORK/aws"
  [ ! -s "$WORK/aws" ] || fail "aws s3 sync would still copy: $(cat "$WORK/aws")"
}

test_interop_skyrun_then_awscli() {
  local b; b=$(fresh_bucket sync-sky-aws)
  make_tree "$WORK/i1"
  sky_s3 sync "$WORK/i1" "s3://$b/t" >/dev/null
  aws_sync "$WORK/i1" "s3://$b/t" >"$WORK/aws"
  [ ! -s "$WORK/aws" ] || fail "aws s3 sync (up) would copy again: $(cat "$WORK/aws")"
  sky_s3 sync "s3://$b/t" "$WORK/i1-down" >/dev/null
  aws_sync "s3://$b/t" "$WORK/i1-down" >"$WORK/aws"
  [ ! -s "$WORK/aws" ] || fail "aws s3 sync (down) would copy again: $(cat "$WORK/aws")"
  aws_sync "$WORK/i1-down" "s3://$b/t" >"$WORK/aws"
  [ ! -s "$WORK/aws" ] || fail "aws s3 sync of the downloaded tree would copy: $(cat "$WORK/aws")"
}

test_interop_awscli_then_skyrun() {
  local b; b=$(fresh_bucket sync-aws-sky)
  make_tree "$WORK/i2"
  aws_sync "$WORK/i2" "s3://$b/t" >/dev/null
  expect_exit 0 sky_s3 sync "$WORK/i2" "s3://$b/t"
  [ ! -s "$WORK/out" ] || fail "skyrun sync (up) would copy again: $(cat "$WORK/out")"
  aws_sync "s3://$b/t" "$WORK/i2-down" >/dev/null
  expect_exit 0 sky_s3 sync "s3://$b/t" "$WORK/i2-down"
  [ ! -s "$WORK/out" ] || fail "skyrun sync (down) would copy again: $(cat "$WORK/out")"
  expect_exit 0 sky_s3 sync --checksum "s3://$b/t" "$WORK/i2-down"
  [ ! -s "$WORK/out" ] || fail "skyrun sync --checksum (down) would copy again: $(cat "$WORK/out")"
}

test_mv() {
  local b b2; b=$(fresh_bucket sync-mv); b2=$(fresh_bucket sync-mv2)
  printf 'one\n' >"$WORK/one.txt"
  expect_exit 0 sky_s3 mv "$WORK/one.txt" "s3://$b/dir/"
  expect_in "$WORK/out" "move: $WORK/one.txt to s3://$b/dir/one.txt"
  [ ! -e "$WORK/one.txt" ] || fail "the moved file is still there"
  expect_exit 0 sky_s3 mv "s3://$b/dir/one.txt" "s3://$b2/renamed.txt"
  [ "$(keys_of "$b2")" = "renamed.txt" ] || fail "keys of $b2: $(keys_of "$b2")"
  [ -z "$(keys_of "$b" | grep -v None)" ] || fail "the moved object is still there: $(keys_of "$b")"
  expect_exit 0 sky_s3 mv "s3://$b2/renamed.txt" "$WORK/back/"
  [ "$(cat "$WORK/back/renamed.txt")" = one ] || fail "content after moving down"
  make_tree "$WORK/mvtree"
  expect_exit 0 sky_s3 mv -r --exclude '*.log' "$WORK/mvtree" "s3://$b/tree"
  [ "$(keys_of "$b" | tr '\n' ' ')" = "tree/a.txt tree/d/b.txt tree/d/e/c.bin " ] || fail "keys: $(keys_of "$b")"
  [ "$(find "$WORK/mvtree" -type f)" = "$WORK/mvtree/d/x.log" ] || fail "left: $(find "$WORK/mvtree" -type f)"
  expect_exit 2 sky_s3 mv "$WORK/mvtree" "s3://$b/x"
  expect_in "$WORK/err" "use mv -r"
  # Moving onto itself would delete what it copied: refused, nothing touched.
  expect_exit 2 sky_s3 mv "s3://$b/tree/a.txt" "s3://$b/tree/"
  expect_in "$WORK/err" "is its own destination"
  expect_exit 1 sky_s3 mv -r "s3://$b/tree" "s3://$b/tree/sub"
  expect_in "$WORK/err" "one contains the other"
  [ "$(keys_of "$b" | tr '\n' ' ')" = "tree/a.txt tree/d/b.txt tree/d/e/c.bin " ] || fail "keys: $(keys_of "$b")"
}

test_a_failure_names_the_object_and_keeps_what_was_done() {
  local b; b=$(fresh_bucket sync-fail)
  mkdir -p "$WORK/ff"
  printf '1\n' >"$WORK/ff/a-first.txt"
  printf '2\n' >"$WORK/ff/broken.bin"
  printf '3\n' >"$WORK/ff/c-never.txt"
  start_proxy --error-rate 100 --status 403 --match broken.bin
  # One request at a time: the files go in path order, so what is kept is known.
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 sync --parallel 1 "$WORK/ff" "s3://$b/x"
  expect_in "$WORK/err" "s3://$b/x/broken.bin"
  expect_in "$WORK/err" "1 copy and 0 deletes done before the failure is kept"
  expect_in "$WORK/out" "upload: $WORK/ff/a-first.txt to s3://$b/x/a-first.txt"
  [ "$(keys_of "$b")" = "x/a-first.txt" ] || fail "keys: $(keys_of "$b")"
  # In parallel, what finished before the failure stops the rest is kept,
  # complete; the failed object never appears.
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 sync "$WORK/ff" "s3://$b/y"
  expect_in "$WORK/err" "s3://$b/y/broken.bin"
  keys_of "$b" | grep -q '^y/broken.bin$' && fail "the failed upload left an object"
  [ "$(awss3 s3 cp "s3://$b/x/a-first.txt" -)" = 1 ] || fail "a-first.txt is not complete"
  expect_exit 1 sky_s3 sync "$WORK/ff/a-first.txt" "s3://$b/z"
  expect_in "$WORK/err" "a-first.txt is not a folder"
  expect_exit 2 sky_s3 sync "$WORK/ff" "$WORK/elsewhere"
  expect_in "$WORK/err" "one of SRC and DST must be an s3:// URL"
  expect_exit 2 sky_s3 cp --delete "$WORK/ff/a-first.txt" "s3://$b/z"
  expect_in "$WORK/err" "are for sync and mv"
  expect_exit 2 sky_s3 sync -r "$WORK/ff" "s3://$b/z"
  expect_exit 2 sky_s3 sync "$WORK/ff" "s3://$b/z" --exclude
  expect_in "$WORK/err" "--exclude needs a value"
  expect_exit 0 sky_s3 --help
  expect_in "$WORK/out" "sync SRC DST [--delete] [--dryrun] [--exclude GLOB] [--include GLOB] [--checksum]"
  expect_in "$WORK/out" "mv [-r] SRC DST"
}

# `skyrun s3 sync` through the proxy in the background with SIGINT at its
# default disposition (bash starts background jobs with SIGINT ignored); then
# SIGINT, a bounded wait, and SYNC_STATUS.
start_sync() {
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT env --default-signal=INT "$SKYRUN" s3 sync "$@" >"$WORK/out" 2>"$WORK/err" &
  SYNC_PID=$!
}
interrupt_sync() {
  local deadline=$((SECONDS + 30))
  kill -INT "$SYNC_PID"
  while kill -0 "$SYNC_PID" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
  if kill -0 "$SYNC_PID" 2>/dev/null; then
    kill -KILL "$SYNC_PID" 2>/dev/null || true
    wait "$SYNC_PID" 2>/dev/null || true
    fail "skyrun s3 sync did not stop within 30 s of SIGINT"
  fi
  SYNC_STATUS=0
  wait "$SYNC_PID" || SYNC_STATUS=$?
}
proxy_saw() { grep -q -- "$1" "$PROXY_LOG" 2>/dev/null; }
temp_file_in() { [ -n "$(find "$1" -name '*.skyrun-tmp-*' -print -quit 2>/dev/null)" ]; }

test_interrupted_download_sync_leaves_whole_files_only() {
  local b i; b=$(fresh_bucket sync-int-down)
  mkdir -p "$WORK/many"
  for i in 1 2 3 4 5 6; do random_file "$WORK/many/f$i.bin" $((3 * MiB)); done
  awss3 s3 cp --recursive --only-show-errors "$WORK/many" "s3://$b/m/"
  start_proxy --delay-ms 100                     # 64 KiB per 100 ms per connection
  start_sync "s3://$b/m" "$WORK/many-down"
  wait_for 60 temp_file_in "$WORK/many-down"     # bodies are arriving in temp files
  interrupt_sync
  [ "$SYNC_STATUS" = 130 ] || fail "exit status $SYNC_STATUS after SIGINT, expected 130: $(cat "$WORK/err")"
  grep -qi "interrupt" "$WORK/err" || fail "stderr does not say it was interrupted: $(cat "$WORK/err")"
  ! temp_file_in "$WORK/many-down" || fail "temp files left: $(find "$WORK/many-down" -name '*.skyrun-tmp-*')"
  for i in $(find "$WORK/many-down" -type f -printf '%f\n'); do
    cmp "$WORK/many/$i" "$WORK/many-down/$i" || fail "$i is not complete"
  done
}

test_interrupted_upload_sync_aborts_its_multipart_upload() {
  local b; b=$(fresh_bucket sync-int-up)
  mkdir -p "$WORK/bigup"
  random_file "$WORK/bigup/big.bin" $((30 * MiB))
  start_proxy --delay-ms 100
  start_sync --part-size 5 "$WORK/bigup" "s3://$b/u"
  wait_for 60 proxy_saw "partNumber="
  interrupt_sync
  [ "$SYNC_STATUS" = 130 ] || fail "exit status $SYNC_STATUS after SIGINT, expected 130: $(cat "$WORK/err")"
  expect_uploads_closed_by_client
  expect_exit 254 awss3 s3api head-object --bucket "$b" --key u/big.bin
}

test_case "a folder syncs to a prefix; a second run sends only listings and prints nothing" \
  test_folder_to_prefix_then_nothing
test_case "a prefix syncs to a new folder with the objects' times; a second run transfers nothing" \
  test_prefix_to_folder_then_nothing
test_case "a prefix syncs to another bucket; a second run transfers nothing" test_prefix_to_prefix_then_nothing
test_case "large files (multipart up, ranged down) and small ones sync together; second runs transfer nothing" \
  test_large_and_small_files_together
test_case "--dryrun prints what --delete would do and changes nothing; --delete works both ways" \
  test_delete_and_dryrun
test_case "--exclude/--include apply in order, excluded objects are not deleted, aws-cli agrees" \
  test_excludes_and_includes
test_case "a tree synced by skyrun is up to date for aws s3 sync, up and down" test_interop_skyrun_then_awscli
test_case "a tree synced by aws s3 sync is up to date for skyrun, up and down (and by checksum)" \
  test_interop_awscli_then_skyrun
test_case "mv moves a file up, an object across buckets and down, and a folder with -r" test_mv
test_case "Ctrl-C during a download sync exits 130 and leaves only whole files, no temp file" \
  test_interrupted_download_sync_leaves_whole_files_only
test_case "Ctrl-C during an upload sync exits 130, aborts the multipart upload, leaves no object" \
  test_interrupted_upload_sync_aborts_its_multipart_upload
test_case "a failed sync names the object, keeps what was done, and stops; usage errors exit 2" \
  test_a_failure_names_the_object_and_keeps_what_was_done
finish
