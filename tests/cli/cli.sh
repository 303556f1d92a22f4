#!/usr/bin/env bash
# skyrun's command line: exit 0 on success, 1 on a script error (with
# file:line), 2 on a usage error; --help, --version, -e, script arguments.
set -euo pipefail
skyrun=$1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run() { set +e; "$skyrun" "$@" > "$TMP/out" 2> "$TMP/err"; status=$?; set -e; }

run --version
[ $status -eq 0 ] && grep -q "^skyrun [0-9]" "$TMP/out" || fail "--version"
run --help
[ $status -eq 0 ] && grep -q "usage: skyrun" "$TMP/out" || fail "--help"
run --no-such-flag
[ $status -eq 2 ] && grep -q "unknown option '--no-such-flag'" "$TMP/err" || fail "unknown flag must exit 2"
run
[ $status -eq 2 ] || fail "no script must exit 2"
run -e
[ $status -eq 2 ] || fail "-e without code must exit 2"

run -e 'print(1 + 1)'
[ $status -eq 0 ] && [ "$(cat "$TMP/out")" = 2 ] || fail "-e runs code"
run -e 'print(sky.version)'
[ $status -eq 0 ] && grep -q "^[0-9]" "$TMP/out" || fail "the global sky is there for -e"

printf 'local n = select("#", ...)\nprint(arg[0], arg[1], arg[2], n, ...)\n' > "$TMP/args.lua"
run "$TMP/args.lua" one "two words"
[ $status -eq 0 ] || fail "script with args"
[ "$(cat "$TMP/out")" = "$TMP/args.lua	one	two words	2	one	two words" ] || { cat "$TMP/out"; fail "arg table and ..."; }

printf 'local x = 1\n\nerror("bad thing")\n' > "$TMP/err.lua"
run "$TMP/err.lua"
[ $status -eq 1 ] || fail "a script error must exit 1 (got $status)"
grep -q "err.lua:3: bad thing" "$TMP/err" || { cat "$TMP/err"; fail "error must name file:line"; }

printf 'this is not lua\n' > "$TMP/syntax.lua"
run "$TMP/syntax.lua"
[ $status -eq 1 ] && grep -q "syntax.lua:1:" "$TMP/err" || fail "syntax error must exit 1 with file:line"

run "$TMP/missing.lua"
[ $status -eq 1 ] && grep -q "missing.lua" "$TMP/err" || fail "a missing script must be named"

# Bytecode is never loaded from the command line (text mode only). The
# bytecode file is made by skyrun itself (string.dump), so this check needs
# no other tool and never skips itself.
run -e "local f = assert(io.open('$TMP/chunk.luac', 'wb'))
        f:write(string.dump(function() print('bytecode ran') end)); f:close()"
[ $status -eq 0 ] && [ -s "$TMP/chunk.luac" ] || fail "could not write a bytecode file: $(cat "$TMP/err")"
run "$TMP/chunk.luac"
[ $status -eq 1 ] && ! grep -q "bytecode ran" "$TMP/out" || fail "a bytecode file must be refused"
echo "ok - command line"
