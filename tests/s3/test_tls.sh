#!/usr/bin/env bash
# TLS to a private endpoint: an https endpoint with a self-signed certificate
# (openssl s_server on loopback, a throwaway certificate) is refused with a
# message that names the endpoint, the certificate problem and the way out
# (ca_bundle); with ca_bundle naming that certificate the connection is made.
. "$(dirname "$0")/lib.sh"

command -v openssl >/dev/null || skip_all "openssl(1) is not installed: no certificate, no TLS server"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/tls.key" -out "$WORK/tls.crt" -days 1 \
  -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1" >/dev/null 2>&1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
timeout 120 openssl s_server -accept "127.0.0.1:$PORT" -cert "$WORK/tls.crt" -key "$WORK/tls.key" \
  -www -quiet >/dev/null 2>&1 </dev/null &
PROXY_PIDS+=($!)
port_open() { bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; }
wait_for 10 port_open

tls_get() {
  sky_lua "https://127.0.0.1:$PORT" "$@" <<'EOF2'
local sky = require "sky"
local endpoint, ca = ...
local st <close> = sky.storage.s3 { endpoint = endpoint, region = "us-east-1", path_style = true,
  access_key = "S3RVER", secret_key = "S3RVER", ca_bundle = ca, retries = 0 }
st:get("tls-bucket", "some/key")
EOF2
}

test_self_signed_endpoint_is_refused_with_a_clear_message() {
  expect_exit 1 tls_get
  expect_in "$WORK/err" "s3 get s3://tls-bucket/some/key"
  expect_in "$WORK/err" "https://127.0.0.1:$PORT"
  expect_in "$WORK/err" "certificate"
  expect_in "$WORK/err" "ca_bundle"
}

test_ca_bundle_makes_the_self_signed_endpoint_work() {
  # s_server -www answers any GET with 200 and a page: the TLS part worked.
  expect_exit 0 tls_get "$WORK/tls.crt"
}

test_unreadable_ca_bundle_is_named() {
  expect_exit 1 tls_get "$WORK/no-such.pem"
  expect_in "$WORK/err" "no-such.pem"
  expect_in "$WORK/err" "ca_bundle"
}

test_case "a self-signed https endpoint is refused naming the endpoint and ca_bundle" \
  test_self_signed_endpoint_is_refused_with_a_clear_message
test_case "ca_bundle with the endpoint's certificate makes the connection work" \
  test_ca_bundle_makes_the_self_signed_endpoint_work
test_case "a ca_bundle that cannot be read is named in the error" test_unreadable_ca_bundle_is_named
finish
