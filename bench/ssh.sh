#!/usr/bin/env bash
# ssh provider benchmarks, in one run, on a 4-host test bed this script brings
# up (tests/ssh/testbed.sh: each host a network + mount namespace with its own
# sshd) and always takes down. Each skyrun measure has an OpenSSH reference
# measured on the same bed in the same run:
#   (a) bring-up of a 4-host pool (1 worker per host) to its first result, cold
#       (each host's ~/.cache/skyrun removed: the worker is copied) and warm,
#       against 4 parallel `ssh root@H true`;
#   (b) round trip of a trivial call on a 1-host, 1-worker pool, p50 / p99,
#       against 8 bytes bounced through `ssh root@H cat` (bench/ssh_echo.c);
#   (c) a 64 MiB string argument (random bytes) to a function returning its
#       length, against `scp` of the same 64 MiB file to the host.
# Builds a Release tree in build-bench first. Needs root (network namespaces);
# exits 77 when the bed cannot run here. Every step runs under `timeout`.
#   sudo bash bench/ssh.sh [REPS] [CALLS] [MIB]     (defaults 5 2000 64)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
reps=${1:-5}
calls=${2:-2000}
mib=${3:-64}
TESTBED=$root/tests/ssh/testbed.sh
STEP_TIMEOUT=${BENCH_STEP_TIMEOUT_S:-120}
[ "$(id -u)" -eq 0 ] || { echo "skipped: needs root (the test bed's network namespaces)" >&2; exit 77; }

cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSKYRUN_TESTS=OFF > /dev/null
cmake --build build-bench -j"$(nproc)" --target skyrun skyrun-worker > /dev/null
cc -std=c11 -O2 -Wall -Wextra -o build-bench/ssh_echo bench/ssh_echo.c
sky=$root/build-bench/skyrun

work=$(mktemp -d "${TMPDIR:-/tmp}/skyrun-bench-ssh.XXXXXX")
BED=$work/bed
cleanup() { "$TESTBED" down "$BED" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
rc=0
BED_WATCH_PID=$$ timeout 180 "$TESTBED" up "$BED" 4 >"$work/up.log" 2>&1 || rc=$?
if [ $rc -ne 0 ]; then
  cat "$work/up.log" >&2
  [ $rc -eq 77 ] && exit 77
  echo "the test bed did not come up" >&2
  exit 1
fi
# shellcheck disable=SC1091
. "$BED/env"
read -r -a HOSTS <<<"$BED_HOSTS"
export BENCH_HOSTS=$BED_HOSTS BENCH_KEY=$BED_KEY BENCH_KNOWN_HOSTS=$BED_KNOWN_HOSTS
# OpenSSH with no user config (-F /dev/null), the bed's key and known_hosts.
# shellcheck disable=SC2206
SSH_OPTS=(-F /dev/null $BED_SSH_OPTS)

t() { timeout "$STEP_TIMEOUT" "$@"; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
list() { paste -sd' ' "$1" | sed 's/ /, /g'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "# $(date -u +%FT%TZ) on $(nproc) cores, $(uname -r), load $load_at_start, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "# bed: ${#HOSTS[@]} hosts ($BED_HOSTS); reps=$reps calls=$calls size=${mib} MiB"

# ---------- (a) bring-up ----------
: >"$work/ssh_true1"; : >"$work/ssh_true"; : >"$work/cold"; : >"$work/warm"; : >"$work/cold_proc"; : >"$work/warm_proc"
# The first login of each host pays one-off costs (sshd's first fork, page cache): not counted.
for h in "${HOSTS[@]}"; do t ssh "${SSH_OPTS[@]}" "root@$h" true; done
t "$sky" bench/ssh.lua bringup >/dev/null
for ((r = 1; r <= reps; r++)); do
  t0=$(now)
  t ssh "${SSH_OPTS[@]}" "root@${HOSTS[0]}" true   # one login, for scale
  elapsed "$t0" "$(now)" >>"$work/ssh_true1"; echo >>"$work/ssh_true1"
  t0=$(now)
  pids=()
  for h in "${HOSTS[@]}"; do t ssh "${SSH_OPTS[@]}" "root@$h" true & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p"; done
  elapsed "$t0" "$(now)" >>"$work/ssh_true"; echo >>"$work/ssh_true"

  for i in $(seq 1 "${#HOSTS[@]}"); do t "$TESTBED" host "$BED" "$i" exec rm -rf /root/.cache/skyrun; done
  t0=$(now)
  out=$(t "$sky" bench/ssh.lua bringup)
  elapsed "$t0" "$(now)" >>"$work/cold_proc"; echo >>"$work/cold_proc"
  awk '{ split($4, f, "="); print f[2] }' <<<"$out" >>"$work/cold"

  t0=$(now)
  out=$(t "$sky" bench/ssh.lua bringup)
  elapsed "$t0" "$(now)" >>"$work/warm_proc"; echo >>"$work/warm_proc"
  awk '{ split($4, f, "="); print f[2] }' <<<"$out" >>"$work/warm"
done
m_true1=$(median <"$work/ssh_true1"); m_true=$(median <"$work/ssh_true"); m_cold=$(median <"$work/cold"); m_warm=$(median <"$work/warm")
m_cold_proc=$(median <"$work/cold_proc"); m_warm_proc=$(median <"$work/warm_proc")

# ---------- (b) call round trip ----------
echo_out=$(t build-bench/ssh_echo "$calls" 200 ssh "${SSH_OPTS[@]}" "root@${HOSTS[0]}" cat)
rtt_out=$(t "$sky" bench/ssh.lua rtt "$calls")
echo_p50=$(sed -n 's/.*p50=\([0-9.]*\).*/\1/p' <<<"$echo_out"); echo_p99=$(sed -n 's/.*p99=\([0-9.]*\).*/\1/p' <<<"$echo_out")
rtt_p50=$(sed -n 's/.*p50=\([0-9.]*\).*/\1/p' <<<"$rtt_out"); rtt_p99=$(sed -n 's/.*p99=\([0-9.]*\).*/\1/p' <<<"$rtt_out")

# ---------- (c) a 64 MiB argument ----------
head -c $((mib << 20)) /dev/urandom >"$work/big"
bytes=$(stat -c %s "$work/big")
: >"$work/scp"; : >"$work/scp_ctr"; : >"$work/cat"
# timed CMD...: wall seconds to $work/wall, the client's CPU seconds (user + system) to $work/cpu
timed() {
  local t0 rc=0; t0=$(now)
  /usr/bin/time -f '%U %S' -o "$work/time" timeout "$STEP_TIMEOUT" "$@" || rc=$?
  elapsed "$t0" "$(now)" >"$work/wall"
  awk '{ printf "%.2f", $1 + $2 }' "$work/time" >"$work/cpu"
  return $rc
}
for ((r = 1; r <= reps; r++)); do
  timed scp -q "${SSH_OPTS[@]}" "$work/big" "root@${HOSTS[0]}:/tmp/bench-big"
  echo "$(cat "$work/wall") $(cat "$work/cpu")" >>"$work/scp"
  t ssh "${SSH_OPTS[@]}" "root@${HOSTS[0]}" rm -f /tmp/bench-big
  # The same with the cipher and MAC that libssh2 1.10 takes from the provider's
  # preferences (it has no AES-GCM, and OpenSSH's default is chacha20-poly1305).
  timed scp -q -c aes128-ctr -o MACs=hmac-sha2-256 "${SSH_OPTS[@]}" "$work/big" "root@${HOSTS[0]}:/tmp/bench-big"
  echo "$(cat "$work/wall") $(cat "$work/cpu")" >>"$work/scp_ctr"
  t ssh "${SSH_OPTS[@]}" "root@${HOSTS[0]}" rm -f /tmp/bench-big
  # A bare stream over one exec channel, nothing written on the host.
  timed ssh "${SSH_OPTS[@]}" "root@${HOSTS[0]}" 'cat >/dev/null' <"$work/big"
  echo "$(cat "$work/wall") $(cat "$work/cpu")" >>"$work/cat"
done
t "$sky" bench/ssh.lua arg "$work/big" "$reps" >"$work/arg_out"
awk '{ split($4, f, "="); split($6, c, "="); print f[2], c[2] }' "$work/arg_out" >"$work/arg"
col() { awk -v c="$1" '{ print $c }' "$2"; }
m_scp=$(col 1 "$work/scp" | median); m_scp_ctr=$(col 1 "$work/scp_ctr" | median); m_cat=$(col 1 "$work/cat" | median)
m_arg=$(col 1 "$work/arg" | median)
c_scp=$(col 2 "$work/scp" | median); c_scp_ctr=$(col 2 "$work/scp_ctr" | median); c_cat=$(col 2 "$work/cat" | median)
c_arg=$(col 2 "$work/arg" | median)
runs() { col 1 "$1" | paste -sd' ' | sed 's/ /, /g'; }
mibs() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.1f", b / s / 1048576 }'; }

# ---------- table ----------
verdict() { awk -v v="$1" -v lim="$2" -v op="$3" 'BEGIN { ok = (op == "le") ? v <= lim : v >= lim; print (ok ? "met" : "NOT met") }'; }
r_warm=$(ratio "$m_warm" "$m_true"); r_cold=$(ratio "$m_cold" "$m_true")
r_rtt=$(ratio "$rtt_p50" "$echo_p50"); r_arg=$(ratio "$m_scp" "$m_arg"); r_arg_nologin=$(ratio "$(elapsed "$m_true1" "$m_scp")" "$m_arg")
echo
echo "| measure | median (runs) | reference | ratio | target | verdict |"
echo "|---|---|---|---|---|---|"
echo "| one \`ssh root@H true\` (a login, for scale) | $m_true1 s ($(list "$work/ssh_true1")) | | | | |"
echo "| 4 parallel \`ssh root@H true\` (OpenSSH) | $m_true s ($(list "$work/ssh_true")) | | | | |"
echo "| warm bring-up of a 4-host pool to the first result | $m_warm s ($(list "$work/warm")) | 4× \`ssh true\` | ${r_warm}× | ≤ 1.5× | $(verdict "$r_warm" 1.5 le) |"
echo "| cold bring-up (worker copied to each host) | $m_cold s ($(list "$work/cold")) | 4× \`ssh true\` | ${r_cold}× | | |"
echo "| whole skyrun process, warm / cold (start, bring-up, one call, stop) | $m_warm_proc / $m_cold_proc s | | | | |"
echo "| raw echo over an SSH channel (\`ssh H cat\`, 8 bytes), p50 / p99 | $echo_p50 / $echo_p99 µs | | | (the floor) | |"
echo "| trivial call round trip (1 host, 1 worker), p50 / p99 | $rtt_p50 / $rtt_p99 µs | channel echo p50 | ${r_rtt}× | ≤ 3× | $(verdict "$r_rtt" 3 le) |"
echo "| \`scp\` of $mib MiB (OpenSSH defaults), client CPU $c_scp s | $(mibs "$m_scp") MiB/s, $m_scp s ($(runs "$work/scp")) | | | | |"
echo "| \`scp -c aes128-ctr -o MACs=hmac-sha2-256\`, client CPU $c_scp_ctr s | $(mibs "$m_scp_ctr") MiB/s, $m_scp_ctr s ($(runs "$work/scp_ctr")) | | | | |"
echo "| \`ssh H 'cat >/dev/null' < file\` (one channel, defaults), client CPU $c_cat s | $(mibs "$m_cat") MiB/s, $m_cat s ($(runs "$work/cat")) | | | | |"
echo "| scp (defaults) less one login ($m_scp - $m_true1 s) | $(mibs "$(elapsed "$m_true1" "$m_scp")") MiB/s | | | | |"
echo "| $mib MiB string argument, \`f(s) >> pool\` returning #s, skyrun CPU $c_arg s | $(mibs "$m_arg") MiB/s, $m_arg s ($(runs "$work/arg")) | scp (defaults) | ${r_arg}× (${r_arg_nologin}× of scp less a login) | ≥ 0.5× | $(verdict "$r_arg" 0.5 ge) |"
echo
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
