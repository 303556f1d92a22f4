#!/usr/bin/env bash
# A worker that speaks another protocol version is refused with a message
# that says both versions, and the pool start fails cleanly.
source "$(dirname "$0")/lib.sh"
skyrun=$1
make_tmp

# A real process that answers like a skyrun-worker of protocol 9:
# frame = u32 body_len | u8 type (1 = HELLO) | u8 flags | body;
# body = "SKYRUN\0\1" | u32 protocol | u32 LUA_VERSION_NUM (504) | facts.
cat > "$TMP/old-worker" <<'SH'
#!/usr/bin/env bash
printf '\x11\x00\x00\x00\x01\x00SKYRUN\x00\x01\x09\x00\x00\x00\xf8\x01\x00\x00\x00'
sleep 5
SH
chmod +x "$TMP/old-worker"

set +e
"$skyrun" -e "local sky = require 'sky'
local pool <close> = sky.compute { worker = '$TMP/old-worker' }" > "$TMP/out" 2> "$TMP/err"
status=$?
set -e
cat "$TMP/err"
[ "$status" -eq 1 ] || fail "exit status $status, expected 1"
grep -q "protocol 9" "$TMP/err" || fail "the error does not name the worker's protocol"
grep -q "host speaks protocol 3" "$TMP/err" || fail "the error does not name the host's protocol"
grep -q "node 0 worker 0" "$TMP/err" || fail "the error does not name the worker"
echo "ok - protocol mismatch is a clear error"
