#!/usr/bin/env bash
# s3_transfer.sh: the storage benchmark. Uploads and downloads one file of
# random bytes (1 GiB by default) to a fresh local s3rver with skyrun and with
# aws-cli, alternating the order run by run, and reports per tool and
# direction the median throughput, the peak RSS (GNU time) and how busy the
# server was (its CPU seconds per wall second: ~1.0 means the single-threaded
# Node server, not the client, set the pace). Every download is checked byte
# for byte against the source, outside the timed part.
#
#   bench/s3_transfer.sh [--size-mib N] [--runs N] [--skyrun PATH] [--aws PATH]
#                        [--tools "skyrun aws-cli"] [--doc docs/PERFORMANCE.md]
#
# Both clients run with their default settings: skyrun s3 cp (8 MiB parts,
# 8 requests in flight) and aws s3 cp (8 MiB multipart chunks, 10 concurrent
# requests) from an empty HOME, so no ~/.aws/config changes them.
# --doc rewrites the "## Storage" section of that file with the results.
# Needs: s3rver (scripts/install-deps.sh), aws-cli, GNU time, about 3× the
# file size of free disk under ${TMPDIR:-/tmp}.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
invocation="bench/s3_transfer.sh $*"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
size_mib=1024
runs=3
skyrun=${SKYRUN:-$repo/build/skyrun}
aws=${AWS_CLI:-/usr/bin/aws}
doc=""
tools="skyrun aws-cli"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --size-mib) size_mib=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --skyrun) skyrun=$2; shift 2 ;;
    --aws) aws=$2; shift 2 ;;
    --doc) doc=$2; shift 2 ;;
    --tools) tools=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "s3_transfer.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ "$size_mib" =~ ^[0-9]+$ && "$runs" =~ ^[0-9]+$ && "$runs" -ge 1 ]] || { echo "sizes and runs are integers" >&2; exit 2; }
[[ " $tools " != *" skyrun "* ]] || [ -x "$skyrun" ] || { echo "s3_transfer.sh: no skyrun at $skyrun (build it, or pass --skyrun)" >&2; exit 2; }
[ -x "$aws" ] || { echo "s3_transfer.sh: no aws-cli at $aws" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "s3_transfer.sh: GNU time (/usr/bin/time) is needed" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/skyrun-bench.XXXXXX")
state=$work/s3rver.state
cleanup() {
  "$repo/tests/support/s3rver.sh" stop "$state" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/home"
"$repo/tests/support/s3rver.sh" start "$state" >/dev/null
# shellcheck disable=SC1090
. "$state"
server_pid=$(ps -o pid= --ppid "$S3RVER_PID" | tr -d ' ' | head -n1)   # node, under `timeout`
export HOME=$work/home AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER \
       AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_PAGER=""
bucket=bench
"$aws" --endpoint-url "$S3_ENDPOINT" s3 mb "s3://$bucket" >/dev/null

src=$work/src.bin
echo "making $size_mib MiB of random bytes in $src" >&2
head -c $((size_mib * 1024 * 1024)) /dev/urandom >"$src"
bytes=$(stat -c %s "$src")

# CPU seconds (user + system) the server process has used so far.
server_cpu() { awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$server_pid/stat"; }

# Runs one timed transfer; appends "tool dir seconds rss_kib server_cpu_s
# client_cpu_s" to results.
timed() {
  local tool=$1 dir=$2; shift 2
  local cpu0 cpu1 secs rss user sys
  cpu0=$(server_cpu)
  /usr/bin/time -f '%e %M %U %S' -o "$work/time" "$@" >/dev/null
  cpu1=$(server_cpu)
  read -r secs rss user sys <"$work/time"
  awk -v t="$tool" -v d="$dir" -v s="$secs" -v r="$rss" -v a="$cpu0" -v b="$cpu1" -v u="$user" -v y="$sys" \
    'BEGIN { printf "%s %s %s %s %.2f %.2f\n", t, d, s, r, b - a, u + y }' >>"$work/results"
  echo "  $tool $dir: ${secs}s, peak RSS ${rss} KiB" >&2
}

run_tool() {
  local tool=$1 run=$2 key="$1-$2"
  case $tool in
    skyrun)
      timed skyrun upload env AWS_ENDPOINT_URL="$S3_ENDPOINT" "$skyrun" s3 cp "$src" "s3://$bucket/$key"
      timed skyrun download env AWS_ENDPOINT_URL="$S3_ENDPOINT" "$skyrun" s3 cp "s3://$bucket/$key" "$work/dst.bin" ;;
    aws-cli)
      timed aws-cli upload "$aws" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors "$src" "s3://$bucket/$key"
      timed aws-cli download "$aws" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors "s3://$bucket/$key" "$work/dst.bin" ;;
  esac
  cmp "$src" "$work/dst.bin" || { echo "s3_transfer.sh: $tool downloaded different bytes" >&2; exit 1; }
  rm -f "$work/dst.bin"
  "$aws" --endpoint-url "$S3_ENDPOINT" s3 rm --only-show-errors "s3://$bucket/$key"
}

: >"$work/results"
for run in $(seq "$runs"); do
  echo "run $run of $runs" >&2
  order=$tools
  [ $((run % 2)) -eq 1 ] || order=$(echo "$tools" | awk '{ for (i = NF; i > 0; i--) printf "%s ", $i }')
  for tool in $order; do run_tool "$tool" "$run"; done
done

# Median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

table() {
  echo "| tool | direction | median MB/s | runs (MB/s) | peak RSS (max of runs) | server CPU s per s | client CPU s per GB |"
  echo "|---|---|---:|---|---:|---:|---:|"
  for dir in upload download; do
    for tool in $tools; do
      local rows mbps all rss busy ccpu
      rows=$(awk -v t="$tool" -v d="$dir" '$1 == t && $2 == d' "$work/results")
      mbps=$(echo "$rows" | awk -v b="$bytes" '{ printf "%.1f\n", b / $3 / 1e6 }' | median)
      all=$(echo "$rows" | awk -v b="$bytes" '{ printf "%s%.1f", (NR > 1 ? ", " : ""), b / $3 / 1e6 }')
      rss=$(echo "$rows" | awk '{ if ($4 > m) m = $4 } END { printf "%.1f MiB", m / 1024 }')
      busy=$(echo "$rows" | awk '{ printf "%.2f\n", $5 / $3 }' | median)
      ccpu=$(echo "$rows" | awk -v b="$bytes" '{ printf "%.2f\n", $6 / (b / 1e9) }' | median)
      echo "| $tool | $dir | $mbps | $all | $rss | $busy | $ccpu |"
    done
  done
}

# Against the issue's targets: >= 1.5x aws-cli's throughput, <= 64 MiB peak RSS;
# and whether the server was saturated while skyrun was measured.
verdict() {
  [[ " $tools " == *" skyrun "* && " $tools " == *" aws-cli "* ]] || return 0
  for dir in upload download; do
    local s a rss busy
    s=$(awk -v d="$dir" '$1 == "skyrun" && $2 == d { print $3 }' "$work/results" | median)
    a=$(awk -v d="$dir" '$1 == "aws-cli" && $2 == d { print $3 }' "$work/results" | median)
    rss=$(awk -v d="$dir" '$1 == "skyrun" && $2 == d { if ($4 > m) m = $4 } END { print m }' "$work/results")
    busy=$(awk -v d="$dir" '$1 == "skyrun" && $2 == d { printf "%.2f\n", $5 / $3 }' "$work/results" | median)
    awk -v s="$s" -v a="$a" -v d="$dir" -v rss="$rss" -v busy="$busy" 'BEGIN {
      r = a / s
      printf "- %s: skyrun / aws-cli throughput = %.2f× (target ≥ 1.5×: %s); skyrun peak RSS %.1f MiB (target ≤ 64 MiB: %s)", \
             d, r, (r >= 1.5 ? "met" : "NOT met"), rss / 1024, (rss <= 65536 ? "met" : "NOT met")
      if (busy >= 0.9) printf "; s3rver was saturated (%.2f CPU s/s) during skyrun'"'"'s %s, so the server, not skyrun, set that pace", busy, d
      print ""
    }'
  done
}

machine() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- machine: $(nproc) CPUs ($(lscpu | sed -n 's/^Model name: *//p' | head -n1)), $(free -g | awk '/^Mem:/ { print $2 }') GiB RAM, $(uname -sr), $(. /etc/os-release && echo "$PRETTY_NAME")"
  [ ! -x "$skyrun" ] || echo "- skyrun: $("$skyrun" --version 2>&1 | head -n1), commit $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown), binary $skyrun"
  echo "- aws-cli: $("$aws" --version 2>&1 | head -n1)"
  echo "- server: s3rver $(node -p "require('$repo/.deps/npm/node_modules/s3rver/package.json').version") on Node $(node --version), loopback, data on $(df -h --output=source "$work" | tail -n1)"
  echo "- file: $size_mib MiB of random bytes, $runs runs per tool, order alternating (skyrun first in odd runs)"
  echo "- skyrun build: $(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$(dirname "$skyrun")/CMakeCache.txt" 2>/dev/null || echo unknown) (CMAKE_BUILD_TYPE of its build tree)"
  echo "- load average when the run started: $load_before (the machine is shared; runs vary)"
  echo "- command: \`$invocation\`"
}

report=$work/report.md
{
  echo "## Storage"
  echo
  echo "One $size_mib MiB file uploaded and downloaded with \`skyrun s3 cp\` and \`aws s3 cp\`"
  echo "against the same local s3rver, both at their default settings (skyrun: 8 MiB parts,"
  echo "8 in flight; aws-cli: 8 MiB multipart chunks, 10 concurrent requests; no"
  echo "\`~/.aws/config\`). Throughput is MB/s (10^6 bytes per second) of wall time; peak"
  echo "RSS from GNU time (\`%M\`); \"server CPU s per s\" is the s3rver process's CPU time"
  echo "divided by the transfer's wall time — near 1.0, the single-threaded Node server is"
  echo "saturated and sets the pace for whichever client is measured; \"client CPU s per GB\""
  echo "is the client's user + system time per 10^9 bytes moved. The source file sits"
  echo "in the page cache for every run. Every download is compared with the"
  echo "source byte for byte after its timing."
  echo
  table
  echo
  verdict
  echo
  machine
} >"$report"
cat "$report"

if [ -n "$doc" ]; then
  [ -f "$doc" ] || printf '# Performance\n' >"$doc"
  # Replace the "## Storage" section (up to the next "## " heading), or append it.
  awk -v rep="$report" '
    function emit() { while ((getline line < rep) > 0) print line; close(rep); print "" }
    /^## Storage[[:space:]]*$/ { emit(); skipping = 1; done = 1; next }
    skipping && /^## / { skipping = 0 }
    !skipping { print }
    END { if (!done) { print ""; emit() } }
  ' "$doc" >"$doc.tmp"
  mv "$doc.tmp" "$doc"
  echo "wrote the Storage section of $doc" >&2
fi
