# shellcheck shell=bash
# lib.sh: what the storage shell tests share (sourced, never run).
#
# Gives each test file a private scratch directory (also its HOME and TMPDIR,
# so the run's leftovers are all in one place and the machine's ~/.aws is never
# read), aws-cli and skyrun pointed at the suite's s3rver, a fault proxy in
# front of it on demand, unique bucket names, bounded waits, and a small
# runner that prints "ok - <behaviour>" / "FAIL - <behaviour>" / "skip -
# <behaviour>" per test.
#
# A test that cannot run on this machine says so and is never counted as
# passed: a case calls `skip REASON`; a whole file calls `skip_all REASON`.
# Either way the file exits 77, which ctest reports as "Skipped"
# (SKIP_RETURN_CODE in tests/s3/CMakeLists.txt).
#
# Environment (ctest sets it, through tests/support/s3rver.sh env or
# tests/support/rgw.sh env):
#   S3_ENDPOINT, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY  the server
#   S3_SERVER                                              rgw, or unset (s3rver)
#   SKYRUN, FAULTPROXY, AWS_CLI                            the programs under test
set -euo pipefail

: "${S3_ENDPOINT:?S3_ENDPOINT is not set: run through ctest (tests/support/s3rver.sh env)}"
SKYRUN=${SKYRUN:-${SKYRUN_BUILD_DIR:?}/skyrun}
FAULTPROXY=${FAULTPROXY:-${SKYRUN_BUILD_DIR:?}/tests/faultproxy}
AWS_CLI=${AWS_CLI:-/usr/bin/aws}
MiB=$((1024 * 1024))

WORK=$(mktemp -d "${TMPDIR:-/tmp}/skyrun-s3sh.XXXXXX")
mkdir -p "$WORK/home" "$WORK/tmp"
export HOME=$WORK/home TMPDIR=$WORK/tmp
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
RUN_ID=$(basename "$WORK" | sed 's/.*\.//' | tr 'A-Z' 'a-z')
PROXY_PIDS=()
FAILED=0
PASSED=0
SKIPPED=0
SKIP_CODE=77

cleanup_lib() {
  local pid
  for pid in "${PROXY_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup_lib EXIT

# aws-cli straight at the server; awscp is its quiet `s3 cp`.
awss3() { "$AWS_CLI" --endpoint-url "$S3_ENDPOINT" "$@"; }
awscp() { "$AWS_CLI" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors "$@"; }

# skyrun's storage command, finding the server through AWS_ENDPOINT_URL.
sky_s3() { AWS_ENDPOINT_URL=$S3_ENDPOINT "$SKYRUN" s3 "$@"; }

# Runs a Lua script given on stdin with the built skyrun: sky_lua [args...] <<'EOF'
sky_lua() {
  local script="$WORK/script.$BASHPID.$RANDOM.lua"
  cat >"$script"
  "$SKYRUN" "$script" "$@"
}

# A bucket name unique to this run and call: bucket_name WHAT. The counter
# lives in a file because callers use $(...), a subshell.
bucket_name() {
  local n
  n=$(($(cat "$WORK/bucket-serial" 2>/dev/null || echo 0) + 1))
  echo "$n" >"$WORK/bucket-serial"
  echo "$1-$RUN_ID-$n"
}

# Creates a bucket with aws-cli (a peer, so skyrun's own mb is tested apart).
fresh_bucket() {
  local b
  b=$(bucket_name "$1")
  awss3 s3 mb "s3://$b" >/dev/null
  echo "$b"
}

random_file() { head -c "$2" /dev/urandom >"$1"; }

fail() { echo "    $*" >&2; return 1; }

# Inside a test case: this case cannot run here (a tool is missing).
skip() { echo "    skipped: $*"; exit "$SKIP_CODE"; }
# At the top of a file: none of its cases can run here.
skip_all() { echo "skipped: $*"; exit "$SKIP_CODE"; }

# Fails unless the file holds the text (grep -F).
expect_in() { grep -qF -- "$2" "$1" || { echo "    --- $1:" >&2; sed 's/^/    | /' "$1" >&2; fail "'$2' not found in $1"; }; }
expect_not_in() { ! grep -qF -- "$2" "$1" || fail "'$2' found in $1 (must not be there)"; }

# Runs CMD, capturing stdout/stderr to $WORK/out and $WORK/err; fails unless
# its exit status is the expected one.  expect_exit STATUS CMD...
expect_exit() {
  local want=$1 rc=0; shift
  "$@" >"$WORK/out" 2>"$WORK/err" || rc=$?
  if [ "$rc" != "$want" ]; then
    echo "    --- stdout:" >&2; sed 's/^/    | /' "$WORK/out" >&2
    echo "    --- stderr:" >&2; sed 's/^/    | /' "$WORK/err" >&2
    fail "exit status $rc, expected $want: $*"
  fi
}

# Waits until CMD succeeds, at most SECONDS: wait_for SECONDS CMD...
wait_for() {
  local limit=$1 deadline; shift
  deadline=$((SECONDS + limit))
  until "$@"; do
    [ $SECONDS -lt "$deadline" ] || { fail "gave up after ${limit}s waiting for: $*"; return 1; }
    sleep 0.1
  done
}

# Starts a fault proxy in front of the server; sets PROXY_ENDPOINT, PROXY_PID
# and PROXY_LOG (one line per request). start_proxy [faultproxy options...]
start_proxy() {
  local portfile="$WORK/proxy.$BASHPID.$RANDOM.port"
  PROXY_LOG="$WORK/proxy.$BASHPID.$RANDOM.log"
  "$FAULTPROXY" --upstream "${S3_ENDPOINT#http://}" --log "$PROXY_LOG" --max-seconds 900 "$@" \
    >"$portfile" &
  PROXY_PID=$!
  PROXY_PIDS+=("$PROXY_PID")
  wait_for 10 test -s "$portfile"
  PROXY_ENDPOINT="http://127.0.0.1:$(head -n1 "$portfile")"
}

stop_proxy() {
  kill "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
}

# Counts the proxy's requests with a given fate (pass, error, cut-request, cut-response).
proxy_count() { awk -v f="$1" '$4 == f' "$PROXY_LOG" | wc -l; }

# Which server the suite runs against: s3rver (the default) or rgw (Ceph's
# RADOS Gateway, tests/support/rgw.sh env sets S3_SERVER=rgw).
on_rgw() { [ "${S3_SERVER:-s3rver}" = rgw ]; }

# Multipart uploads still open in a bucket. RGW is asked with
# ListMultipartUploads (aws s3api list-multipart-uploads). s3rver 3.7
# answers that with NotImplemented, so its own store is read instead: an
# upload lives in <data>/<bucket>/._S3rver_uploads/<uploadId>/ until it is
# completed.
server_pending_uploads() {
  if on_rgw; then
    local n
    n=$(awss3 s3api list-multipart-uploads --bucket "$1" --query 'length(Uploads || `[]`)' --output text) ||
      { echo "list-multipart-uploads failed for bucket $1" >&2; return 1; }
    echo "$n"
    return 0
  fi
  local dir="$S3RVER_DATA/fs/$1/._S3rver_uploads"
  if [ -d "$dir" ]; then find "$dir" -mindepth 1 -maxdepth 1 -type d | wc -l; else echo 0; fi
}

# Fails unless the server lists no multipart upload left open in BUCKET, after
# a transfer that failed or was interrupted. Only a server that implements
# both ListMultipartUploads and AbortMultipartUpload (RGW) can prove it: on
# s3rver, which refuses AbortMultipartUpload, an aborted upload stays in its
# store, so there expect_uploads_closed_by_client (the wire) is the proof.
expect_no_uploads_left_on_server() {
  on_rgw || return 0
  local n
  n=$(server_pending_uploads "$1") || fail "cannot list the multipart uploads of $1"
  [ "$n" = 0 ] || { awss3 s3api list-multipart-uploads --bucket "$1" >&2 || true
    fail "$n multipart upload(s) left open in bucket $1"; }
  echo "    (ListMultipartUploads: no upload left in $1)"
}

# Fails unless every multipart upload the client used through the proxy
# (every uploadId in the proxy log) was completed (POST ?uploadId=) or
# aborted (DELETE ?uploadId=) by the client. s3rver 3.7 refuses
# AbortMultipartUpload (405), so an abort can only be seen on the wire.
expect_uploads_closed_by_client() {
  local id ids=0
  for id in $(grep -o 'uploadId=[0-9a-zA-Z._~-]*' "$PROXY_LOG" | sort -u | cut -d= -f2); do
    ids=$((ids + 1))
    grep -Eq "^[0-9]+ (POST|DELETE) [^ ]*[?&]uploadId=$id( |&)" "$PROXY_LOG" ||
      fail "multipart upload $id was neither completed nor aborted by the client"
  done
  [ "$ids" -ge 1 ] || fail "no multipart upload went through the proxy"
}

# Number of UploadPart requests the proxy saw.
proxy_parts() { grep -c 'partNumber=' "$PROXY_LOG" || true; }

# Runs one test function in a subshell with errexit on: test NAME FUNCTION.
# SKYRUN_TEST_ONLY=TEXT (while developing) runs only the cases whose name holds TEXT.
test_case() {
  local name=$1 rc=0; shift
  case "$name" in *"${SKYRUN_TEST_ONLY:-}"*) ;; *) return 0 ;; esac
  set +e
  ( set -e; "$@" )
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    PASSED=$((PASSED + 1)); echo "ok   - $name"
  elif [ $rc -eq "$SKIP_CODE" ]; then
    SKIPPED=$((SKIPPED + 1)); echo "skip - $name"
  else
    FAILED=$((FAILED + 1)); echo "FAIL - $name"
  fi
}

# The file's exit status: 1 when a case failed, else 77 (skipped) when a
# case could not run, else 0.
finish() {
  echo "$PASSED passed, $FAILED failed$([ "$SKIPPED" -eq 0 ] || echo ", $SKIPPED skipped")"
  [ "$FAILED" -eq 0 ] || exit 1
  [ "$SKIPPED" -eq 0 ] || exit "$SKIP_CODE"
}
