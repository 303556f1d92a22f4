#!/bin/sh
# Fails if skyrun-worker ($1) needs any shared library beyond the C library.
# Sanitizer builds link the sanitizer runtimes, so the check is skipped there.
set -eu
worker=$1
if [ "${SKYRUN_SANITIZE:-0}" = 1 ]; then
    echo "skipped: sanitizer builds link libasan/libubsan"
    exit 77
fi
if file "$worker" 2>/dev/null | grep -q "statically linked"; then
    echo "ok: statically linked, needs no shared library"
    exit 0
fi
deps=$(ldd "$worker")
echo "$deps"
extra=$(echo "$deps" | grep -v -E '^\s*(linux-vdso\.so|libc\.so\.6|libm\.so\.6|/lib64/ld-linux|/lib/ld-linux)' || true)
if [ -n "$extra" ]; then
    echo "skyrun-worker needs shared libraries beyond libc:" >&2
    echo "$extra" >&2
    exit 1
fi
echo "ok: only the C library"
