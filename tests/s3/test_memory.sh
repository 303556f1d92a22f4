#!/usr/bin/env bash
# Transfers stream: the peak memory (max RSS, from GNU time) of `skyrun s3 cp`
# does not grow with the file size. A 256 MiB upload and download must peak
# below twice what a 64 MiB one does (a whole-file buffer would add 192 MiB),
# and below 64 MiB, the issue's bound. A memory bound, not a time limit.
. "$(dirname "$0")/lib.sh"

if [ "${SKYRUN_SANITIZE:-0}" = 1 ]; then
  # ASan's quarantine and shadow memory make RSS meaningless here.
  skip_all "peak RSS is not measured under AddressSanitizer (SKYRUN_SANITIZE=1)"
fi
[ -x /usr/bin/time ] || { echo "FAIL - GNU time (/usr/bin/time, Debian package 'time') is needed"; exit 1; }

# Peak RSS in KiB of one `skyrun s3 cp SRC DST`.
peak_rss_kib() {
  /usr/bin/time -f '%M' -o "$WORK/rss" env AWS_ENDPOINT_URL="$S3_ENDPOINT" "$SKYRUN" s3 cp "$1" "$2" \
    >/dev/null
  tail -n1 "$WORK/rss"
}

test_peak_memory_does_not_grow_with_file_size() {
  local b small_up big_up small_down big_down; b=$(fresh_bucket mem)
  random_file "$WORK/small.bin" $((64 * MiB))
  random_file "$WORK/big.bin" $((256 * MiB))
  small_up=$(peak_rss_kib "$WORK/small.bin" "s3://$b/small.bin")
  big_up=$(peak_rss_kib "$WORK/big.bin" "s3://$b/big.bin")
  rm -f "$WORK/small.bin" "$WORK/big.bin"
  small_down=$(peak_rss_kib "s3://$b/small.bin" "$WORK/small.back")
  big_down=$(peak_rss_kib "s3://$b/big.bin" "$WORK/big.back")
  echo "    peak RSS KiB: upload 64 MiB $small_up, 256 MiB $big_up; download 64 MiB $small_down, 256 MiB $big_down"
  [ "$(stat -c %s "$WORK/big.back")" -eq $((256 * MiB)) ] || fail "the 256 MiB download is incomplete"
  [ "$big_up" -lt $((2 * small_up)) ] || fail "upload peak RSS grows with file size: $small_up -> $big_up KiB"
  [ "$big_down" -lt $((2 * small_down)) ] || fail "download peak RSS grows with file size: $small_down -> $big_down KiB"
  [ "$big_up" -le $((64 * 1024)) ] || fail "upload peak RSS $big_up KiB is above 64 MiB"
  [ "$big_down" -le $((64 * 1024)) ] || fail "download peak RSS $big_down KiB is above 64 MiB"
}

test_case "peak memory of a 256 MiB transfer is below twice a 64 MiB one, and below 64 MiB" \
  test_peak_memory_does_not_grow_with_file_size
finish
