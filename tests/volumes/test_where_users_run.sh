#!/usr/bin/env bash
# Where users run it: inside a chroot the test makes (a pool, and a pool
# with volumes), and as a user who is not root (volumes through an
# unprivileged user namespace where the kernel allows one; FUSE refused with
# a message that names the fix).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../s3/lib.sh
. "$here/../s3/lib.sh"
WORKER=${SKYRUN_WORKER:?}

CHROOT=$WORK/chroot
MOUNTED=()
cleanup_where() {
  local m
  for m in "${MOUNTED[@]}"; do umount -l "$m" 2>/dev/null || true; done
}
trap 'cleanup_where; cleanup_lib' EXIT

# Copies a program and the shared libraries it needs into the chroot.
copy_with_libs() {
  local prog=$1 lib
  mkdir -p "$CHROOT$(dirname "$prog")"
  cp -L "$prog" "$CHROOT$prog"
  for lib in $(ldd "$prog" 2>/dev/null | grep -o '/[^ ]*' || true); do
    [ -e "$CHROOT$lib" ] && continue
    mkdir -p "$CHROOT$(dirname "$lib")"
    cp -L "$lib" "$CHROOT$lib"
  done
}

make_chroot() {
  mkdir -p "$CHROOT"/{tmp,dev,work}
  chmod 1777 "$CHROOT/tmp"
  mknod -m 666 "$CHROOT/dev/null" c 1 3
  copy_with_libs "$SKYRUN"
  copy_with_libs "$WORKER"
  # A dynamic worker that cannot start on this "node": a pool whose image
  # asks for it must fall back to the static one.
  printf '#!/bin/sh\necho "cannot run here" >&2\nexit 127\n' >"$CHROOT$WORKER-dynamic"
  chmod 755 "$CHROOT$WORKER-dynamic"
  local tool
  for tool in /bin/sh /bin/ls /usr/bin/s3fs /bin/mkdir /bin/cat; do
    [ -e "$tool" ] && copy_with_libs "$(readlink -f "$tool")" && {
      [ "$(readlink -f "$tool")" = "$tool" ] || { mkdir -p "$CHROOT$(dirname "$tool")"; cp -L "$tool" "$CHROOT$tool"; }
    }
  done
  [ -e /dev/fuse ] && mknod -m 600 "$CHROOT/dev/fuse" c 10 229
  if [ "${SKYRUN_SANITIZE:-0}" = 1 ]; then
    mkdir -p "$CHROOT/proc"
    mount -t proc proc "$CHROOT/proc" && MOUNTED+=("$CHROOT/proc")
  fi
  cat >"$CHROOT/work/job.lua" <<'LUA'
local sky = require "sky"
local bucket, mode, root = arg[1], arg[2], arg[3] or ""
local st = sky.storage.s3 { endpoint = os.getenv("S3_ENDPOINT"), region = "us-east-1", path_style = true }
local volumes = {}
if bucket then
  volumes = { sky.volume { bucket = bucket, prefix = "in/", mount = root .. "/data", storage = st, mode = mode },
              sky.volume { bucket = bucket, prefix = "out/", mount = root .. "/output", read_only = false,
                           storage = st, mode = mode } }
end
do
  local pool <close> = sky.compute { provider = sky.providers.localhost { nodes = 2 }, volumes = volumes,
                                     image = sky.image { apt = arg[4] and { arg[4] } or nil } }
  print(sky.fn(function(x) return x * 7 end)(6) >> pool)
  local ok, err = pcall(function() return sky.fn(function() return require "cjson" end)() >> pool end)
  if not ok and tostring(err):find("static skyrun-worker", 1, true) then print("static worker") end
  if bucket then
    print(sky.fn(function()
      local s = io.open(root .. "/data/x.txt"):read("a")
      local f = io.open(root .. "/output/y.txt", "w"); f:write(s .. "+"); f:close()
      return s
    end)() >> pool)
  end
end
print("done")
LUA
}

CHROOT_BIN=$(command -v chroot || echo /usr/sbin/chroot)
# The chroot has no /proc, on purpose (pools must not need it). Sanitizer
# runtimes read their options and run LeakSanitizer through /proc: in a
# sanitizer build the chroot gets one (make_chroot), and leaks are checked
# by the rest of the suite.
CHROOT_ASAN=${ASAN_OPTIONS:-}
[ "${SKYRUN_SANITIZE:-0}" = 1 ] && CHROOT_ASAN="${CHROOT_ASAN:+$CHROOT_ASAN:}detect_leaks=0"
in_chroot() {
  env -i PATH=/bin:/usr/bin S3_ENDPOINT="$S3_ENDPOINT" AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
    TMPDIR=/tmp HOME=/tmp SKYRUN_WORKER="$WORKER" ASAN_OPTIONS="$CHROOT_ASAN" \
    "$CHROOT_BIN" "$CHROOT" "$SKYRUN" /work/job.lua "$@"
}

test_a_mount_point_such_a_user_may_not_create_is_named() {
  local b; b=$(fresh_bucket nobody-root)
  expect_exit 1 as_nobody "$b" copy
  expect_in "$WORK/err" "cannot create the folder /data: Permission denied"
  expect_in "$WORK/err" "a mount point this user may create"
}

# What skyrun makes in /tmp (node folders, skyrun-*) is gone. (The checkout
# and build are bound into the chroot at their own paths, which may lie
# under /tmp themselves.)
chroot_tmp_is_clean() {
  local left
  left=$(cd "$CHROOT/tmp" && ls -A | grep '^skyrun' || true)
  [ -z "$left" ] || fail "left in the chroot's /tmp: $left"
}

test_a_pool_runs_inside_a_chroot() {
  # (dpkg-query is missing in this chroot: the image asks for no package)
  expect_exit 0 in_chroot
  expect_in "$WORK/out" "42"
  # (sanitizer builds have no static worker to fall back to)
  [ "${SKYRUN_SANITIZE:-0}" = 1 ] || expect_in "$WORK/out" "static worker"
  chroot_tmp_is_clean
}

test_volumes_need_the_chroot_to_be_a_mount_point() {
  local b; b=$(fresh_bucket chroot)
  awscp - "s3://$b/in/x.txt" <<<"hello"
  expect_exit 1 in_chroot "$b" copy
  expect_in "$WORK/err" "root is not a mount point"
  expect_in "$WORK/err" "mount --bind"
}

volumes_in_chroot() {
  local mode=$1 b
  b=$(fresh_bucket "chroot-$mode")
  printf hello | awss3 s3 cp - "s3://$b/in/x.txt" >/dev/null
  expect_exit 0 in_chroot "$b" "$mode"
  expect_in "$WORK/out" "hello"
  [ "$(awss3 s3 cp "s3://$b/out/y.txt" -)" = "hello+" ] || fail "the write did not reach the bucket"
  [ ! -e "$CHROOT/data" ] && [ ! -e "$CHROOT/output" ] || fail "mount points left in the chroot"
  grep -q " $CHROOT/data \| $CHROOT/output " /proc/self/mountinfo && fail "a volume is mounted on the host"
  chroot_tmp_is_clean
}

test_copied_volumes_in_a_chroot() { volumes_in_chroot copy; }
test_mounted_volumes_in_a_chroot() {
  [ -x /usr/bin/s3fs ] && [ -e /dev/fuse ] || skip "no s3fs or /dev/fuse here"
  volumes_in_chroot mount
}

# --- not root ----------------------------------------------------------------

NOBODY_DIR=$WORK/nobody
as_nobody() {
  env -i PATH=/usr/bin:/bin S3_ENDPOINT="$S3_ENDPOINT" AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
    TMPDIR="$NOBODY_DIR/tmp" HOME="$NOBODY_DIR/home" ASAN_OPTIONS="${ASAN_OPTIONS:-}" \
    setpriv --reuid=65534 --regid=65534 --clear-groups "$NOBODY_DIR/bin/skyrun" "$NOBODY_DIR/job.lua" "$@"
}

prepare_nobody() {
  mkdir -p "$NOBODY_DIR"/{bin,tmp,home}
  cp "$SKYRUN" "$WORKER" "$NOBODY_DIR/bin/"
  cp "$CHROOT/work/job.lua" "$NOBODY_DIR/job.lua"
  chmod 755 "$WORK" "$NOBODY_DIR" "$NOBODY_DIR/bin"
  chmod 777 "$NOBODY_DIR/tmp" "$NOBODY_DIR/home"
  chmod 644 "$NOBODY_DIR/job.lua"
}

test_copied_volumes_as_a_user_who_is_not_root() {
  setpriv --reuid=65534 --regid=65534 --clear-groups unshare -Urm true 2>/dev/null \
    || skip "this kernel allows no unprivileged user namespace"
  local b; b=$(fresh_bucket nobody)
  printf hello | awss3 s3 cp - "s3://$b/in/x.txt" >/dev/null
  # Mount points such a user may create: under a folder of its own.
  expect_exit 0 as_nobody "$b" copy "$NOBODY_DIR/home/mnt"
  expect_in "$WORK/out" "hello"
  [ ! -e "$NOBODY_DIR/home/mnt" ] || fail "the mount points it created are left"
  [ "$(awss3 s3 cp "s3://$b/out/y.txt" -)" = "hello+" ] || fail "the write did not reach the bucket"
  [ -z "$(ls -A "$NOBODY_DIR/tmp")" ] || fail "left: $(ls -A "$NOBODY_DIR/tmp")"
}

test_fuse_for_a_user_who_may_not_open_it_names_the_fix() {
  local b; b=$(fresh_bucket nobody-fuse)
  printf hello | awss3 s3 cp - "s3://$b/in/x.txt" >/dev/null
  expect_exit 1 as_nobody "$b" mount "$NOBODY_DIR/home/mnt"
  expect_in "$WORK/err" "cannot use FUSE"
  expect_in "$WORK/err" "/dev/fuse"
  expect_in "$WORK/err" 'mode="copy"'
}

if [ "$(id -u)" -ne 0 ]; then
  skip_all "making a chroot and switching users needs root"
fi
make_chroot
test_case "a pool runs inside a chroot" test_a_pool_runs_inside_a_chroot
test_case "volumes in a chroot that is not a mount point are refused, naming the fix" \
  test_volumes_need_the_chroot_to_be_a_mount_point
mount --rbind "$CHROOT" "$CHROOT" && MOUNTED=("$CHROOT" "${MOUNTED[@]}")
test_case "copied volumes work inside a chroot" test_copied_volumes_in_a_chroot
test_case "s3fs volumes work inside a chroot" test_mounted_volumes_in_a_chroot
prepare_nobody
test_case "copied volumes work for a user who is not root (user namespace)" \
  test_copied_volumes_as_a_user_who_is_not_root
test_case "a mount point a user who is not root may not create is named, with the fix" \
  test_a_mount_point_such_a_user_may_not_create_is_named
test_case "s3fs for a user who may not open /dev/fuse fails naming the fix" \
  test_fuse_for_a_user_who_may_not_open_it_names_the_fix
finish
