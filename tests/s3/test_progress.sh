#!/usr/bin/env bash
# Progress bars only on a terminal: a transfer whose stderr is a file or a
# pipe writes no bar (no carriage returns), the same transfer on a terminal
# draws one. The transfer is slowed by the proxy so that a bar has time to be
# drawn at all (it redraws at most ten times a second).
. "$(dirname "$0")/lib.sh"

slow_upload() {
  AWS_ENDPOINT_URL=$PROXY_ENDPOINT "$SKYRUN" s3 cp "$WORK/f.bin" "s3://$1/$2"
}

test_no_progress_bar_when_stderr_is_not_a_terminal() {
  local b; b=$(fresh_bucket prog-pipe)
  random_file "$WORK/f.bin" $((6 * MiB))
  start_proxy --delay-ms 20
  slow_upload "$b" piped.bin 2>"$WORK/err" | cat >"$WORK/out"
  if grep -q $'\r' "$WORK/err" "$WORK/out"; then fail "carriage returns (a progress bar) in redirected output"; fi
  awss3 s3api head-object --bucket "$b" --key piped.bin >/dev/null
}

# A slowed 6 MiB upload with skyrun's stderr on a terminal, recorded in
# $WORK/typescript: upload_on_a_terminal [SKYRUN OPTIONS...]
upload_on_a_terminal() {
  local b; b=$(fresh_bucket prog-tty)
  command -v script >/dev/null || skip "script(1) is not installed, no way to give skyrun a terminal here"
  random_file "$WORK/f.bin" $((6 * MiB))
  start_proxy --delay-ms 20
  # script(1) runs the command on a new pseudo-terminal and records it.
  script -q -e -c "AWS_ENDPOINT_URL=$PROXY_ENDPOINT '$SKYRUN' $* s3 cp '$WORK/f.bin' 's3://$b/tty.bin'" \
    "$WORK/typescript" </dev/null >/dev/null
}

test_progress_bar_on_a_terminal() {
  upload_on_a_terminal
  # The terminal ends every line with "\r\n"; a bar redraws with a "\r" inside a line.
  grep -q $'\r.' "$WORK/typescript" || fail "no progress bar drawn on a terminal: $(cat -v "$WORK/typescript")"
  grep -q '%' "$WORK/typescript" || fail "the bar shows no percentage: $(cat -v "$WORK/typescript")"
}

test_no_progress_flag_silences_the_bar_on_a_terminal() {
  upload_on_a_terminal --no-progress
  if grep -q $'\r.' "$WORK/typescript"; then
    fail "a bar was drawn despite --no-progress: $(cat -v "$WORK/typescript")"
  fi
}

test_case "no progress bar when stderr is not a terminal" test_no_progress_bar_when_stderr_is_not_a_terminal
test_case "a progress bar when stderr is a terminal" test_progress_bar_on_a_terminal
test_case "--no-progress draws no bar even on a terminal" test_no_progress_flag_silences_the_bar_on_a_terminal
finish
