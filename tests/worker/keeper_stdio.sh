#!/usr/bin/env bash
# The node keeper over a plain byte stream (--stdio, as remote providers run
# it over an ssh channel or a Slurm step): it answers requests on stdout,
# refuses to start processes (no descriptors can travel), and when its input
# ends — the host gone — removes what it made and its node folder.
set -euo pipefail
worker=$1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
field() { printf '%d:%s,' "${#1}" "$1"; }
mkdir -p "$tmp/node"
{
  field mkdirs; field "$tmp/made/deeper"; printf '\n'
  field write; field "$tmp/node/secret"; field "k:s"; printf '\n'
  field spawn; field /; field 1; field /bin/true; field 0; printf '\n'
} > "$tmp/requests"
"$worker" --keeper "$tmp/node" --stdio --shared-mounts < "$tmp/requests" > "$tmp/answers" 2> "$tmp/err" \
  || fail "the keeper failed: $(cat "$tmp/err")"
head -1 "$tmp/answers" | grep -q '^5:ready,1:1,' || fail "no ready record: $(cat "$tmp/answers")"
grep -q '^2:ok,1:2,1:1,$' "$tmp/answers" || fail "mkdirs did not answer 'ok 2 created, empty': $(cat "$tmp/answers")"
grep -q 'byte stream' "$tmp/answers" || fail "spawn over stdio was not refused: $(cat "$tmp/answers")"
[ ! -e "$tmp/made" ] || fail "the folders it made are left"
[ ! -e "$tmp/node" ] || fail "the node folder is left"
echo "ok - the keeper over stdio answers, refuses spawn, and cleans up at the end of its input"
