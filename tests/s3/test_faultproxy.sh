#!/usr/bin/env bash
# The fault proxy itself, checked with a peer client (aws-cli) so the storage
# fault tests rest on a proxy known to behave: it forwards byte for byte when
# asked for no faults, injects exactly the S3 errors it is asked for, limits
# faults to the requests it is told to match, and is repeatable for a seed.
. "$(dirname "$0")/lib.sh"

test_passes_multipart_transfers_byte_for_byte() {
  local b; b=$(fresh_bucket proxy-pass)
  random_file "$WORK/f" $((17 * MiB + 3))
  start_proxy
  "$AWS_CLI" --endpoint-url "$PROXY_ENDPOINT" --only-show-errors s3 cp "$WORK/f" "s3://$b/f"
  "$AWS_CLI" --endpoint-url "$PROXY_ENDPOINT" --only-show-errors s3 cp "s3://$b/f" "$WORK/f.back"
  cmp "$WORK/f" "$WORK/f.back"
  [ "$(proxy_count pass)" -gt 3 ] || fail "expected a multipart upload (several requests) through the proxy"
  [ "$(proxy_count error)" -eq 0 ] || fail "faults injected with no fault asked for"
}

test_always_error_answers_the_s3_error_asked_for() {
  local b; b=$(fresh_bucket proxy-err)
  awscp - "s3://$b/k" <<<"data"
  start_proxy --error-rate 100 --status 503
  expect_exit 254 "$AWS_CLI" --endpoint-url "$PROXY_ENDPOINT" \
    s3api get-object --bucket "$b" --key k "$WORK/k"
  expect_in "$WORK/err" "SlowDown"
  stop_proxy
  start_proxy --error-rate 100 --status 403
  expect_exit 254 "$AWS_CLI" --endpoint-url "$PROXY_ENDPOINT" s3api get-object --bucket "$b" --key k "$WORK/k"
  expect_in "$WORK/err" "SignatureDoesNotMatch"
}

test_match_limits_faults_to_matching_requests() {
  local b; b=$(fresh_bucket proxy-match)
  awscp - "s3://$b/k" <<<"data"
  start_proxy --cut-request-rate 100 --match "PUT "
  "$AWS_CLI" --endpoint-url "$PROXY_ENDPOINT" --only-show-errors s3 cp "s3://$b/k" "$WORK/k"
  expect_in "$WORK/k" "data"
  [ "$(proxy_count cut-request)" -eq 0 ] || fail "a GET was cut although only PUTs match"
}

test_cuts_make_a_peer_client_fail_or_retry() {
  local b; b=$(fresh_bucket proxy-cut)
  awscp - "s3://$b/k" <<<"data"
  start_proxy --cut-response-rate 100
  expect_exit 1 "$AWS_CLI" --endpoint-url "$PROXY_ENDPOINT" --cli-read-timeout 5 \
    s3 cp "s3://$b/k" "$WORK/k"
  [ "$(proxy_count cut-response)" -ge 1 ] || fail "no response was cut"
}

test_same_seed_gives_the_same_sequence_of_faults() {
  local b seq1 seq2; b=$(fresh_bucket proxy-seed)
  awscp - "s3://$b/k" <<<"data"
  for run in 1 2; do
    start_proxy --error-rate 50 --seed 42
    for _ in 1 2 3 4 5 6 7 8; do
      curl -s -o /dev/null --max-time 10 "$PROXY_ENDPOINT/$b/k" || true
    done
    stop_proxy
    awk '{print $4}' "$PROXY_LOG" | tr '\n' ' ' >"$WORK/seq$run"
  done
  seq1=$(cat "$WORK/seq1"); seq2=$(cat "$WORK/seq2")
  [ "$seq1" = "$seq2" ] || fail "fates differ between runs: '$seq1' vs '$seq2'"
  [[ "$seq1" == *error* && "$seq1" == *pass* ]] || fail "50% should give both fates in 8 requests: '$seq1'"
}

test_case "the proxy passes multipart transfers byte for byte when no fault is asked" \
  test_passes_multipart_transfers_byte_for_byte
test_case "the proxy answers the S3 error asked for (503 SlowDown, 403 SignatureDoesNotMatch)" \
  test_always_error_answers_the_s3_error_asked_for
test_case "--match limits faults to the requests it matches" test_match_limits_faults_to_matching_requests
test_case "a proxy that cuts every response makes aws-cli fail" test_cuts_make_a_peer_client_fail_or_retry
test_case "the same seed gives the same sequence of faults" test_same_seed_gives_the_same_sequence_of_faults
finish
