#!/usr/bin/env bash
# The fault proxy's reset options, checked with peer clients (curl, aws-cli)
# so the reset tests (reset_transfers.sh) rest on a proxy known to behave:
# --cut-with close ends a cut connection with a FIN (curl: "transfer closed",
# exit 18) and --cut-with reset with an RST (curl: "Connection reset by peer",
# exit 56); --cut-at random cuts at the logged share of the body, a different
# one per request; --tls-cert/--tls-key serve HTTPS that aws-cli transfers
# through byte for byte, and cut TLS connections the same two ways.
. "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null || { echo "skipped: no openssl"; exit 77; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -keyout "$WORK/tls.key" -out "$WORK/tls.crt" -subj /CN=127.0.0.1 \
  -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1 || { echo "skipped: openssl cannot make a certificate"; exit 77; }
TLS=(--tls-cert "$WORK/tls.crt" --tls-key "$WORK/tls.key")
https_endpoint() { echo "https://${PROXY_ENDPOINT#http://}"; }

# curl through the proxy, recording curl's exit status in CURL_RC:
#   curl_get URL OUT
curl_get() {
  CURL_RC=0
  curl -s --max-time 30 --cacert "$WORK/tls.crt" -o "$2" "$1" 2>/dev/null || CURL_RC=$?
}

B=$(fresh_bucket proxy-reset)
random_file "$WORK/obj" $((3 * MiB + 11))
awscp "$WORK/obj" "s3://$B/obj"
# curl reads it unsigned: s3rver serves anonymous requests, RGW only public objects.
if on_rgw; then awss3 s3api put-object-acl --bucket "$B" --key obj --acl public-read; fi
SIZE=$(stat -c %s "$WORK/obj")

test_close_ends_a_cut_with_a_fin_and_reset_with_an_rst() {
  local mode want scheme
  for scheme in http https; do
    for mode in close reset; do
      if [ "$scheme" = https ]; then start_proxy --cut-response-rate 100 --cut-with "$mode" "${TLS[@]}"
      else start_proxy --cut-response-rate 100 --cut-with "$mode"; fi
      local url=$PROXY_ENDPOINT/$B/obj
      [ "$scheme" = http ] || url=$(https_endpoint)/$B/obj
      curl_get "$url" "$WORK/got"
      stop_proxy
      want=18; [ "$mode" = close ] || want=56
      [ "$CURL_RC" = "$want" ] ||
        fail "$scheme --cut-with $mode: curl exited $CURL_RC, expected $want (18: closed early, 56: reset)"
    done
  done
}

test_random_cut_points_are_logged_and_kept() {
  local i at got want seen=""
  for i in 1 2 3 4; do
    start_proxy --cut-response-rate 100 --cut-at random --cut-with close --seed "$i"
    curl_get "$PROXY_ENDPOINT/$B/obj" "$WORK/got"
    stop_proxy
    [ "$CURL_RC" = 18 ] || fail "seed $i: curl exited $CURL_RC, expected 18 (closed early)"
    at=$(sed -n 's/.* cut-response at=\([0-9]*\)\.\([0-9]\)%$/\1\2/p' "$PROXY_LOG")
    [ -n "$at" ] || fail "seed $i: no cut point in the log: $(cat "$PROXY_LOG")"
    at=$((10#$at))
    got=$(stat -c %s "$WORK/got")
    want=$((SIZE / 1000 * at + SIZE % 1000 * at / 1000))
    [ "$got" = "$want" ] || fail "seed $i: cut at $at per mille of $SIZE bytes, curl got $got, expected $want"
    cmp -n "$got" "$WORK/got" "$WORK/obj" || fail "seed $i: the bytes before the cut differ"
    seen="$seen $at"
  done
  [ "$(echo "$seen" | tr ' ' '\n' | sed '/^$/d' | sort -u | wc -l)" -ge 3 ] ||
    fail "random cut points hardly vary: $seen"
}

test_tls_passes_multipart_transfers_byte_for_byte() {
  random_file "$WORK/f" $((17 * MiB + 3))
  start_proxy "${TLS[@]}"
  local ep; ep=$(https_endpoint)
  "$AWS_CLI" --endpoint-url "$ep" --ca-bundle "$WORK/tls.crt" --only-show-errors s3 cp "$WORK/f" "s3://$B/f"
  "$AWS_CLI" --endpoint-url "$ep" --ca-bundle "$WORK/tls.crt" --only-show-errors s3 cp "s3://$B/f" "$WORK/f.back"
  stop_proxy
  cmp "$WORK/f" "$WORK/f.back"
  [ "$(proxy_count pass)" -gt 3 ] || fail "expected a multipart upload (several requests) through the proxy"
}

test_case "--cut-with close ends a cut with a FIN, --cut-with reset with an RST (http and https)" \
  test_close_ends_a_cut_with_a_fin_and_reset_with_an_rst
test_case "--cut-at random cuts exactly at the share it logs, a different one per seed" \
  test_random_cut_points_are_logged_and_kept
test_case "--tls-cert/--tls-key: aws-cli moves a multipart object through the proxy byte for byte" \
  test_tls_passes_multipart_transfers_byte_for_byte
finish
