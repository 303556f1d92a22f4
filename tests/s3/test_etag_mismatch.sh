#!/usr/bin/env bash
# An upload whose returned ETag does not match what was sent leaves no object
# behind. A fault proxy (faultproxy --bad-etag-rate) lets the request reach
# the server untouched and changes one hex digit of the ETag in the answer —
# of a single PUT, of an UploadPart, or of the assembled multipart object
# (CompleteMultipartUpload's XML body, or the HEAD that reads it where that
# body's <ETag/> is empty, as RGW 16.2 sends it) — so the server holds good bytes under a digest the
# client cannot confirm. skyrun must fail naming the object, and leave no
# object and (listed with ListMultipartUploads where the server has it: RGW)
# no multipart upload behind.
. "$(dirname "$0")/lib.sh"

# Uploads FILE to s3://BUCKET/KEY through the proxy with 5 MiB parts; expects exit 1.
failing_upload() {
  expect_exit 1 env AWS_ENDPOINT_URL="$PROXY_ENDPOINT" "$SKYRUN" s3 cp --part-size 5 "$1" "s3://$2/$3"
  expect_in "$WORK/err" "s3://$2/$3"
  [ "$(proxy_count bad-etag)" -ge 1 ] || fail "the proxy falsified no ETag, so this test proved nothing"
}

expect_no_object() {
  expect_exit 254 awss3 s3api head-object --bucket "$1" --key "$2"
}

# The proof by listing must see an upload that is left open, or it proves nothing.
test_an_open_upload_is_seen_by_the_listing() {
  local b id; b=$(fresh_bucket etag-listing)
  id=$(awss3 s3api create-multipart-upload --bucket "$b" --key open.bin --query UploadId --output text)
  [ "$(server_pending_uploads "$b")" = 1 ] || fail "an open upload is not counted: $(server_pending_uploads "$b")"
  on_rgw || return 0   # s3rver refuses AbortMultipartUpload
  awss3 s3api abort-multipart-upload --bucket "$b" --key open.bin --upload-id "$id"
  expect_no_uploads_left_on_server "$b"
}

test_single_put_with_a_wrong_etag_leaves_no_object() {
  local b; b=$(fresh_bucket etag-put)
  random_file "$WORK/small.bin" 100000
  start_proxy --bad-etag-rate 100 --match "PUT /$b/small.bin"
  failing_upload "$WORK/small.bin" "$b" small.bin
  expect_no_object "$b" small.bin
}

test_part_with_a_wrong_etag_aborts_the_upload() {
  local b; b=$(fresh_bucket etag-part)
  random_file "$WORK/parts.bin" $((12 * MiB))
  start_proxy --bad-etag-rate 100 --match "partNumber=2"
  failing_upload "$WORK/parts.bin" "$b" parts.bin
  expect_uploads_closed_by_client
  expect_no_uploads_left_on_server "$b"
  expect_no_object "$b" parts.bin
}

test_complete_with_a_wrong_etag_leaves_no_object() {
  local b; b=$(fresh_bucket etag-complete)
  # s3rver gives an assembled object a plain MD5 ETag (not S3's md5-of-md5s
  # "-N"), which no client can check against the parts it sent.
  on_rgw || skip "s3rver's multipart ETag is not the md5-of-md5s a client can check"
  random_file "$WORK/mp.bin" $((11 * MiB))
  # RGW 16.2 answers Complete with an empty <ETag/>, so skyrun reads the
  # assembled object's ETag with a HEAD: both answers are falsified.
  start_proxy --bad-etag-rate 100 --match "POST /$b/mp.bin?uploadId=" --match "HEAD /$b/mp.bin"
  failing_upload "$WORK/mp.bin" "$b" mp.bin
  expect_no_object "$b" mp.bin
  expect_no_uploads_left_on_server "$b"
}

test_case "an upload left open is counted by server_pending_uploads, and gone once aborted (RGW)" \
  test_an_open_upload_is_seen_by_the_listing
test_case "a single PUT answered with a wrong ETag fails and leaves no object" \
  test_single_put_with_a_wrong_etag_leaves_no_object
test_case "an UploadPart answered with a wrong ETag fails, aborts the upload, leaves no object" \
  test_part_with_a_wrong_etag_aborts_the_upload
test_case "a CompleteMultipartUpload answered with a wrong ETag fails and leaves no object" \
  test_complete_with_a_wrong_etag_leaves_no_object
finish
