#!/usr/bin/env bash
# Where a copy lands is aws-cli's rule, from both front-ends: every case is
# run with `aws s3 cp`, `skyrun s3 cp` and the Lua `st:upload`/`st:download`,
# each into its own bucket or folder, and the three results must be the same
# keys or the same files (src/s3/target.h holds the rule, once).
#   file to s3://b/dir/ → dir/file     file to s3://b/key → key
#   file to s3://b      → file         folder -r to s3://b/pre or pre/ → pre/…
#   key to an existing folder or a path ending in / → folder/name (created)
#   -r s3://b/pre → the prefix pre/ only, not pre-extra/…
. "$(dirname "$0")/lib.sh"

mkdir -p "$WORK/src/tree/sub"
echo "a file" >"$WORK/src/f.txt"
echo a >"$WORK/src/tree/a.txt"
echo b >"$WORK/src/tree/sub/b.txt"

# The Lua front-end; prints the number of files.
#   lua_up PATH BUCKET [KEY]   st:upload(BUCKET, PATH, {key = KEY}) (no table without KEY)
#   lua_down BUCKET KEY PATH   st:download(BUCKET, KEY, PATH)
lua_storage() {
  sky_lua "$S3_ENDPOINT" "$@" <<'EOF'
local sky = require "sky"
local endpoint, op, a, b, c = ...
local st <close> = sky.storage.s3 { endpoint = endpoint, region = "us-east-1", path_style = true,
  access_key = "S3RVER", secret_key = "S3RVER" }
if op == "up" then print(st:upload(b, a, c and { key = c } or nil)) else print(st:download(a, b, c)) end
EOF
}
lua_up() { lua_storage up "$@"; }
lua_down() { lua_storage down "$@"; }

# Every key of a bucket, one a line, sorted.
keys_of() {
  awss3 s3api list-objects-v2 --bucket "$1" --query 'Contents[].Key' --output text |
    tr '\t' '\n' | grep -v '^None$' | sort
}

# Every file under a folder, relative, sorted.
files_of() { (cd "$1" && find . -type f | sed 's|^\./||' | sort); }

# Fails unless each place holds exactly the expected names, listed by LISTER
# (keys_of or files_of): same_names LISTER "EXPECTED NAMES" PLACE...
same_names() {
  local lister=$1 want=$2 place; shift 2
  want=$(tr ' ' '\n' <<<"$want" | sort)
  for place in "$@"; do
    [ "$("$lister" "$place")" = "$want" ] ||
      fail "$place holds [$("$lister" "$place" | tr '\n' ' ')], expected [$(tr '\n' ' ' <<<"$want")]"
  done
}
same_keys() { same_names keys_of "$@"; }
same_files() { same_names files_of "$@"; }

# ---- uploads ----------------------------------------------------------------

# upload_case KEY_IN_URL LUA_KEY EXPECTED [-r]: the same upload by the three
# clients (a file, or with -r the folder tree/), compared.
upload_case() {
  local url_key=$1 lua_key=$2 want=$3 recursive=${4:-} src aws sky lua
  src=$WORK/src/f.txt
  [ -n "$recursive" ] && src=$WORK/src/tree
  aws=$(fresh_bucket up-aws) sky=$(fresh_bucket up-sky) lua=$(fresh_bucket up-lua)
  awss3 s3 cp --only-show-errors $recursive "$src" "s3://$aws$url_key"
  sky_s3 cp $recursive "$src" "s3://$sky$url_key" >/dev/null
  if [ "$lua_key" = "-" ]; then lua_up "$src" "$lua" >/dev/null; else lua_up "$src" "$lua" "$lua_key" >/dev/null; fi
  same_keys "$want" "$aws" "$sky" "$lua"
}

test_a_file_to_a_prefix_keeps_its_name() { upload_case /dir/ dir/ "dir/f.txt"; }
test_a_file_to_a_key_takes_that_key() { upload_case /renamed.txt renamed.txt "renamed.txt"; }
test_a_file_to_the_bucket_keeps_its_name() { upload_case "" "" "f.txt"; upload_case / - "f.txt"; }
test_a_folder_goes_under_the_prefix_named_with_or_without_slash() {
  upload_case /pre pre "pre/a.txt pre/sub/b.txt" --recursive
  upload_case /pre/ pre/ "pre/a.txt pre/sub/b.txt" --recursive
}
test_a_folder_to_the_bucket_goes_to_its_root() { upload_case "" "" "a.txt sub/b.txt" --recursive; }

test_lua_without_a_key_uses_the_file_or_folder_name() {
  local b; b=$(fresh_bucket up-lua-default)
  lua_up "$WORK/src/f.txt" "$b" >/dev/null
  lua_up "$WORK/src/tree" "$b" >/dev/null
  same_keys "f.txt tree/a.txt tree/sub/b.txt" "$b"
}

# ---- downloads --------------------------------------------------------------

SRC_BUCKET=$(fresh_bucket down-src)
for k in k/x.txt pre/a.txt pre/sub/b.txt pre-extra/z.txt; do echo "$k" | awscp - "s3://$SRC_BUCKET/$k"; done

# download_case KEY DEST EXPECTED [-r]: each client downloads s3://SRC/KEY to
# ROOT/DEST in its own ROOT (aws, sky, lua; each with a folder "exist"), and
# the trees must match. DEST "" is ROOT itself.
download_case() {
  local key=$1 dest=$2 want=$3 recursive=${4:-} root
  for root in aws sky lua; do rm -rf "${WORK:?}/$root"; mkdir -p "$WORK/$root/exist"; done
  awss3 s3 cp --only-show-errors $recursive "s3://$SRC_BUCKET/$key" "$WORK/aws/$dest"
  sky_s3 cp $recursive "s3://$SRC_BUCKET/$key" "$WORK/sky/$dest" >/dev/null
  # Lua has no -r: a key ending in / is the prefix.
  if [ -n "$recursive" ] && [[ "$key" != */ ]]; then key=$key/; fi
  lua_down "$SRC_BUCKET" "$key" "$WORK/lua/$dest" >/dev/null
  same_files "$want" "$WORK/aws" "$WORK/sky" "$WORK/lua"
  diff -r "$WORK/aws" "$WORK/sky" && diff -r "$WORK/aws" "$WORK/lua"
}

test_a_key_into_an_existing_folder_keeps_its_name() { download_case k/x.txt exist "exist/x.txt"; }
test_a_key_to_a_path_ending_in_slash_makes_that_folder() { download_case k/x.txt new/ "new/x.txt"; }
test_a_key_to_a_file_path_creates_its_folders() { download_case k/x.txt a/b/c.txt "a/b/c.txt"; }
test_a_key_to_a_new_name_is_that_file() { download_case k/x.txt y.txt "y.txt"; }
test_a_recursive_prefix_is_the_folder_with_or_without_slash() {
  download_case pre out "out/a.txt out/sub/b.txt" --recursive
  download_case pre/ out/ "out/a.txt out/sub/b.txt" --recursive
}

# ---- server-side copies (skyrun s3 and aws-cli) ----------------------------

test_copies_between_buckets_follow_the_same_rules() {
  local aws sky
  aws=$(fresh_bucket cp-aws) sky=$(fresh_bucket cp-sky)
  awss3 s3 cp --only-show-errors "s3://$SRC_BUCKET/k/x.txt" "s3://$aws/dir/"
  sky_s3 cp "s3://$SRC_BUCKET/k/x.txt" "s3://$sky/dir/" >/dev/null
  awss3 s3 cp --only-show-errors --recursive "s3://$SRC_BUCKET/pre" "s3://$aws/copy"
  sky_s3 cp -r "s3://$SRC_BUCKET/pre" "s3://$sky/copy" >/dev/null
  same_keys "dir/x.txt copy/a.txt copy/sub/b.txt" "$aws" "$sky"
}

test_case "a file to s3://b/dir/ is dir/file (aws, skyrun s3, Lua)" test_a_file_to_a_prefix_keeps_its_name
test_case "a file to s3://b/key is key (aws, skyrun s3, Lua)" test_a_file_to_a_key_takes_that_key
test_case "a file to s3://b is the file's name (aws, skyrun s3, Lua)" test_a_file_to_the_bucket_keeps_its_name
test_case "a folder -r to s3://b/pre or pre/ is pre/... (aws, skyrun s3, Lua)" \
  test_a_folder_goes_under_the_prefix_named_with_or_without_slash
test_case "a folder -r to s3://b lands at the root (aws, skyrun s3, Lua)" test_a_folder_to_the_bucket_goes_to_its_root
test_case "Lua upload without a key uses the file's or the folder's name" \
  test_lua_without_a_key_uses_the_file_or_folder_name
test_case "a key to an existing folder is folder/name (aws, skyrun s3, Lua)" \
  test_a_key_into_an_existing_folder_keeps_its_name
test_case "a key to a path ending in / creates it and keeps the name (aws, skyrun s3, Lua)" \
  test_a_key_to_a_path_ending_in_slash_makes_that_folder
test_case "a key to a file path creates the folders above it (aws, skyrun s3, Lua)" \
  test_a_key_to_a_file_path_creates_its_folders
test_case "a key to a new name is that file (aws, skyrun s3, Lua)" test_a_key_to_a_new_name_is_that_file
test_case "a recursive download of pre or pre/ is that prefix, not pre-extra (aws, skyrun s3, Lua)" \
  test_a_recursive_prefix_is_the_folder_with_or_without_slash
test_case "s3:// to s3:// copies follow the same rules (aws, skyrun s3)" \
  test_copies_between_buckets_follow_the_same_rules
finish
