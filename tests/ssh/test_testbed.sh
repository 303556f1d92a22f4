#!/usr/bin/env bash
# test_testbed.sh: smoke test of the multi-host SSH test bed (tests/ssh/testbed.sh)
# that the ssh provider's tests run on: hosts answer over SSH with strict host-key
# checking, have their own /tmp, ~/.cache, hostname and mount table, take SFTP
# uploads, reach the bed's s3rver (s3fs mounts from a host work); the fault
# injections do what they say; leftovers sees what is left on a host; two beds
# coexist; a bed whose owner died is taken down by its watchdog; down leaves
# nothing behind. BED_TEST_TIMES=1 prints when each case ended.
# Needs root (exits 77 otherwise, or when testbed.sh says the machine cannot
# run it). Prints "ok - ..." / "FAIL - ..." per case.
set -uo pipefail

TESTBED=$(cd "$(dirname "$0")" && pwd)/testbed.sh
SKIP_CODE=77
WORK=$(mktemp -d "${TMPDIR:-/tmp}/skyrun-sshbed-test.XXXXXX")
BED=$WORK/bed
BED2=$WORK/bed2
BED3=$WORK/bed3
PASSED=0
FAILED=0

cleanup() {
  "$TESTBED" down "$BED3" >/dev/null 2>&1
  "$TESTBED" down "$BED2" >/dev/null 2>&1
  "$TESTBED" down "$BED" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "    $*" >&2; return 1; }

# Runs a case in a subshell with errexit: test_case NAME FUNCTION
test_case() {
  local name=$1 rc=0; shift
  # not `( ... ) || rc=$?`: errexit is off inside anything on the left of a || list
  ( set -e; "$@" )
  rc=$?
  if [ $rc -eq 0 ]; then PASSED=$((PASSED + 1)); echo "ok   - $name${BED_TEST_TIMES:+ (at ${SECONDS}s)}"
  else FAILED=$((FAILED + 1)); echo "FAIL - $name"; fi
}

# ssh into a bed host the way the brief's provider will (strict host keys), bounded.
bed_ssh() { local h=$1; shift; timeout 60 ssh -i "$BED_KEY" -o IdentitiesOnly=yes -o BatchMode=yes \
  -o UserKnownHostsFile="$BED_KNOWN_HOSTS" -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes \
  -o ConnectTimeout=5 "root@$h" "$@"; }
host_addr() { echo "$BED_HOSTS" | cut -d' ' -f"$1"; }

# expect_ssh_fails I PATTERN: ssh to host I fails (by itself, not by our timeout) saying PATTERN
expect_ssh_fails() {
  local rc=0
  bed_ssh "$(host_addr "$1")" true >"$WORK/out" 2>"$WORK/err" || rc=$?
  [ $rc -eq 255 ] || { cat "$WORK/err" >&2; fail "ssh exit status $rc, expected 255"; }
  grep -qE -- "$2" "$WORK/err" || { cat "$WORK/err" >&2; fail "no '$2' in ssh's errors"; }
}

# ---------- cases ----------

case_ssh_each_host() {
  local i h name names=""
  for i in 1 2 3; do
    h=$(host_addr "$i")
    name=$(bed_ssh "$h" hostname) || fail "ssh to host $i ($h) failed"
    [ "$name" = "$(echo "$BED_HOSTNAMES" | cut -d' ' -f"$i")" ] || fail "host $i says hostname '$name'"
    names+="$name "
  done
  [ "$(echo $names | tr ' ' '\n' | sort -u | wc -l)" = 3 ] || fail "hostnames not distinct: $names"
}

case_private_tmp_and_cache() {
  local probe=bedprobe.$$
  bed_ssh "$(host_addr 1)" "echo one >/tmp/$probe && echo one >/root/.cache/$probe"
  [ "$(bed_ssh "$(host_addr 1)" "cat /tmp/$probe /root/.cache/$probe")" = "one"$'\n'"one" ] || fail "host 1 lost its files"
  bed_ssh "$(host_addr 2)" "test ! -e /tmp/$probe && test ! -e /root/.cache/$probe" || fail "host 2 sees host 1's files"
  "$TESTBED" host "$BED" 3 exec test ! -e "/tmp/$probe" || fail "host 3 sees host 1's /tmp"
  [ ! -e "/tmp/$probe" ] && [ ! -e "/root/.cache/$probe" ] || fail "the machine itself sees host 1's files"
  # own mount table: a mount made in a session stays on that host
  bed_ssh "$(host_addr 2)" "mkdir -p /tmp/m && mount -t tmpfs probe /tmp/m && grep -q ' /tmp/m ' /proc/self/mountinfo"
  ! "$TESTBED" host "$BED" 1 exec grep -q ' /tmp/m ' /proc/self/mountinfo || fail "host 1 sees host 2's mount"
  ! grep -q ' /tmp/m ' /proc/self/mountinfo || fail "the machine sees host 2's mount"
  bed_ssh "$(host_addr 2)" "umount /tmp/m && rmdir /tmp/m"
  bed_ssh "$(host_addr 1)" "rm -f /tmp/$probe /root/.cache/$probe"
}

case_sftp_upload() {
  # scp speaks SFTP (OpenSSH >= 9): the Subsystem a provider uploading files uses
  head -c 100000 /dev/urandom >"$WORK/blob"
  timeout 60 scp -q -i "$BED_KEY" -o BatchMode=yes -o UserKnownHostsFile="$BED_KNOWN_HOSTS" \
    -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o ConnectTimeout=5 \
    "$WORK/blob" "root@$(host_addr 2):/tmp/blob" || fail "scp upload failed"
  [ "$(bed_ssh "$(host_addr 2)" sha256sum /tmp/blob | cut -d' ' -f1)" = "$(sha256sum <"$WORK/blob" | cut -d' ' -f1)" ] ||
    fail "uploaded bytes differ"
  bed_ssh "$(host_addr 1)" "test ! -e /tmp/blob" || fail "the upload shows on host 1"
  bed_ssh "$(host_addr 2)" rm /tmp/blob
}

case_empty_known_hosts_refused() {
  local rc=0
  timeout 60 ssh -i "$BED_KEY" -o BatchMode=yes -o UserKnownHostsFile="$BED_KNOWN_HOSTS_EMPTY" \
    -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o ConnectTimeout=5 \
    "root@$(host_addr 1)" true 2>"$WORK/err" || rc=$?
  [ $rc -eq 255 ] && grep -q 'Host key verification failed' "$WORK/err" || { cat "$WORK/err" >&2; fail "rc $rc"; }
}

case_s3rver_from_hosts() {
  local code
  code=$(bed_ssh "$(host_addr 2)" curl -s -o /dev/null --max-time 10 -w '%{http_code}' "$BED_S3_ENDPOINT/")
  [ "$code" = 200 ] || fail "s3rver answered $code to host 2"
  code=$("$TESTBED" host "$BED" 3 exec curl -s -o /dev/null --max-time 10 -w '%{http_code}' "$BED_S3_ENDPOINT/")
  [ "$code" = 200 ] || fail "s3rver answered $code to host 3 (exec)"
}

case_netdown_netup() {
  "$TESTBED" host "$BED" 2 netdown
  expect_ssh_fails 2 'timed out|No route to host' || { "$TESTBED" host "$BED" 2 netup; return 1; }
  "$TESTBED" host "$BED" 2 netup
  [ "$(bed_ssh "$(host_addr 2)" echo back)" = back ] || fail "no ssh after netup"
}

case_kill_sshd_keeps_host() {
  bed_ssh "$(host_addr 3)" "echo kept >/tmp/bedkeep"
  "$TESTBED" host "$BED" 3 kill-sshd
  expect_ssh_fails 3 'Connection refused'
  "$TESTBED" host "$BED" 3 start-sshd
  [ "$(bed_ssh "$(host_addr 3)" cat /tmp/bedkeep)" = kept ] || fail "host 3's /tmp did not survive an sshd restart"
  bed_ssh "$(host_addr 3)" rm /tmp/bedkeep
}

case_kill_all_is_a_reboot() {
  bed_ssh "$(host_addr 3)" "echo gone >/tmp/bedgone"
  "$TESTBED" host "$BED" 3 kill-all
  expect_ssh_fails 3 'Connection refused'
  ! "$TESTBED" host "$BED" 3 exec true 2>/dev/null || fail "exec worked on a host that is gone"
  "$TESTBED" host "$BED" 3 start-sshd
  bed_ssh "$(host_addr 3)" "test ! -e /tmp/bedgone" || fail "host 3's /tmp survived kill-all"
}

case_leftovers() {
  "$TESTBED" leftovers "$BED" 0 >"$WORK/left" || { cat "$WORK/left" >&2; fail "leftovers on a fresh bed"; }
  # a process left running by a session, and a file under /tmp/skyrun-*
  local pid
  pid=$(bed_ssh "$(host_addr 1)" 'mkdir -p /tmp/skyrun-left && { setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $!; }')
  ! "$TESTBED" leftovers "$BED" 0 >"$WORK/left" || fail "leftovers exited 0"
  grep -q '^host 1: process .*sleep 600' "$WORK/left" || { cat "$WORK/left" >&2; fail "sleep not reported"; }
  grep -q '^host 1: file /tmp/skyrun-left' "$WORK/left" || { cat "$WORK/left" >&2; fail "folder not reported"; }
  grep -q "^host 1: process $pid: sleep 600" "$WORK/left" || fail "pid $pid not the one reported"
  kill "$pid"
  bed_ssh "$(host_addr 1)" "rm -rf /tmp/skyrun-left"
  "$TESTBED" leftovers "$BED" 10 >"$WORK/left" || { cat "$WORK/left" >&2; fail "leftovers after cleaning up"; }
}

case_fuse_mount_leftover() {
  command -v s3fs >/dev/null || { echo "    (s3fs not installed: fuse part not run)"; return 0; }
  curl -s -f -o /dev/null --max-time 10 -X PUT "$BED_S3_ENDPOINT/bedbucket" || fail "cannot create a bucket"
  bed_ssh "$(host_addr 2)" "umask 077; echo S3RVER:S3RVER >/tmp/pw; mkdir -p /tmp/mnt &&
    s3fs bedbucket /tmp/mnt -o url=$BED_S3_ENDPOINT,use_path_request_style,passwd_file=/tmp/pw &&
    for i in \$(seq 100); do grep -q ' /tmp/mnt .* fuse' /proc/self/mountinfo && break; sleep 0.1; done;
    echo hi >/tmp/mnt/obj && sync"
  ! "$TESTBED" leftovers "$BED" 0 >"$WORK/left" || fail "leftovers exited 0 with a fuse mount"
  grep -q '^host 2: mount /tmp/mnt (fuse' "$WORK/left" || { cat "$WORK/left" >&2; fail "mount not reported"; }
  grep -q '^host 2: process .*s3fs' "$WORK/left" || { cat "$WORK/left" >&2; fail "s3fs not reported"; }
  ! grep -q ' /tmp/mnt ' /proc/self/mountinfo || fail "the machine sees host 2's fuse mount"
  bed_ssh "$(host_addr 2)" "fusermount3 -u /tmp/mnt 2>/dev/null || umount /tmp/mnt; rm -rf /tmp/mnt /tmp/pw"
  "$TESTBED" leftovers "$BED" 10 >"$WORK/left" || { cat "$WORK/left" >&2; fail "leftovers after unmounting"; }
}

case_rekey_is_refused() {
  "$TESTBED" host "$BED" 1 rekey
  expect_ssh_fails 1 'REMOTE HOST IDENTIFICATION HAS CHANGED'
  grep -q 'Host key verification failed' "$WORK/err" || fail "no 'Host key verification failed'"
  # the current keys, as known-hosts prints them, are accepted again
  "$TESTBED" known-hosts "$BED" >"$WORK/known_hosts.now"
  [ "$(timeout 60 ssh -i "$BED_KEY" -o BatchMode=yes -o UserKnownHostsFile="$WORK/known_hosts.now" \
    -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o ConnectTimeout=5 "root@$(host_addr 1)" echo again)" = again ] ||
    fail "the new key from known-hosts is not accepted"
}

case_second_bed_coexists() {
  "$TESTBED" up "$BED2" 3 2>"$WORK/err2" || { cat "$WORK/err2" >&2; fail "second bed did not come up"; }
  local b1=$BED_BRIDGE s1=${BED_S3_ENDPOINT%:*} h
  ( . "$BED2/env"
    [ "$BED_BRIDGE" != "$b1" ] || fail "same bridge $b1"
    [ "${BED_S3_ENDPOINT%:*}" != "$s1" ] || fail "same subnet $s1"
    h=${BED_HOSTS%% *}
    [ "$(bed_ssh "$h" hostname)" = "${BED_HOSTNAMES%% *}" ] || fail "second bed's host 1 not answering" )
  bed_ssh "$(host_addr 1)" true || fail "first bed broken by the second"
  "$TESTBED" down "$BED2" || fail "down of the second bed failed"
  ip link show "$b1" >/dev/null 2>&1 || fail "first bed's bridge gone"
  bed_ssh "$(host_addr 2)" true || fail "first bed broken by the second's down"
}

case_watchdog_downs_an_orphaned_bed() {
  local owner tag
  sleep 600 &
  owner=$!
  BED_WATCH_PID=$owner "$TESTBED" up "$BED3" 3 2>"$WORK/err3" || { kill $owner; cat "$WORK/err3" >&2; fail "third bed did not come up"; }
  tag=$(. "$BED3/env" && echo "${BED_BRIDGE#sbd}")
  kill $owner; wait $owner 2>/dev/null || true
  for _ in $(seq 600); do [ -e "$BED3" ] || break; sleep 0.1; done
  [ ! -e "$BED3" ] || fail "the watchdog did not take the bed down"
  ! ip -o link show | grep -q "sbd$tag" || fail "links left"
  ! ip netns list | grep -q "^sbd$tag-" || fail "netns left"
}

case_down_leaves_nothing() {
  local tag=${BED_BRIDGE#sbd} f
  "$TESTBED" down "$BED" || fail "down failed"
  ! ip netns list | grep -q "^sbd$tag-" || fail "netns left: $(ip netns list | grep "^sbd$tag-")"
  ! ip -o link show | grep -q "sbd$tag" || fail "links left"
  for f in /proc/[0-9]*/cmdline; do
    if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -qF -- "$BED/"; then fail "process left: ${f%/cmdline}"; fi
  done
  [ ! -e "$BED" ] || fail "$BED still there: $(ls -A "$BED")"
  "$TESTBED" down "$BED" || fail "second down failed"
}

# ---------- main ----------

rc=0
BED_WATCH_PID=$$ "$TESTBED" up "$BED" 3 2>"$WORK/up.err" || rc=$?
if [ $rc -eq $SKIP_CODE ]; then cat "$WORK/up.err"; echo "skipped: the test bed cannot run here"; exit $SKIP_CODE; fi
if [ $rc -ne 0 ]; then cat "$WORK/up.err" >&2; echo "FAIL - up"; exit 1; fi
echo "ok   - up ($(tail -n1 "$WORK/up.err"))"
. "$BED/env"

test_case "ssh with strict host keys reaches each host, distinct hostnames" case_ssh_each_host
test_case "hosts have their own /tmp, ~/.cache and mount table" case_private_tmp_and_cache
test_case "an upload over SFTP (scp) lands in that host's /tmp" case_sftp_upload
test_case "an empty known_hosts is refused under strict checking" case_empty_known_hosts_refused
test_case "s3rver answers from inside the hosts" case_s3rver_from_hosts
test_case "netdown makes ssh time out, netup restores it" case_netdown_netup
test_case "kill-sshd refuses connections, start-sshd restores, /tmp kept" case_kill_sshd_keeps_host
test_case "kill-all is a machine loss, start-sshd a fresh boot" case_kill_all_is_a_reboot
test_case "leftovers reports processes and /tmp/skyrun-* on hosts" case_leftovers
test_case "leftovers reports fuse mounts and s3fs (s3fs against the bed's s3rver)" case_fuse_mount_leftover
test_case "a second bed coexists and goes down alone" case_second_bed_coexists
test_case "rekey makes OpenSSH refuse with a changed-key error" case_rekey_is_refused
test_case "a bed whose owner died is taken down by its watchdog" case_watchdog_downs_an_orphaned_bed
test_case "down leaves no netns, link, sshd or s3rver; down is idempotent" case_down_leaves_nothing

echo "$PASSED passed, $FAILED failed"
[ $FAILED -eq 0 ]
