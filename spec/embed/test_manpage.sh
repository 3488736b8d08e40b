#!/usr/bin/env bash
# The host program's manual and --help: the page renders without a
# warning, --help exits 0 on stdout, a usage error exits 2 on stderr, and
# every option --help names is in the manual and does what it says.
# Usage: test_manpage.sh path/to/tapio path/to/tapio.1
set -uo pipefail
host=$1 page=$2
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }

warnings=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1)
[ -z "$warnings" ] && ok "tapio.1 renders without warnings" ||
  bad "tapio.1: $warnings"
text=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -P-cbou "$page" 2>/dev/null)

out=$("$host" --help 2>/dev/null); status=$?
[ $status -eq 0 ] && [[ $out == usage:* ]] && ok "tapio --help: usage on stdout, 0" ||
  bad "tapio --help: status $status"
[ "$("$host" -h)" = "$out" ] && ok "-h is --help" || bad "-h differs"
err=$("$host" 2>&1 >/dev/null); status=$?
[ $status -eq 2 ] && [[ $err == usage:* ]] && ok "no arguments: usage on stderr, 2" ||
  bad "no arguments: status $status"
for opt in $(grep -o -- ' -[a-z-]*' <<<"$out" | sort -u); do
  grep -q -- "$opt" <<<"$text" && ok "the manual names $opt" ||
    bad "$opt is not in the manual"
done
ver=$("$host" --version)
[[ $ver == tapio* ]] && [ "$("$host" -v)" = "$ver" ] &&
  ok "--version: $ver" || bad "--version: $ver"
v=$(sed -n 's/^tapio \([0-9.]*\),.*/\1/p' <<<"$ver")
[ -n "$v" ] && head -1 "$page" | grep -q "\"tapio $v\"" &&
  ok "the manual's version is the program's" || bad "the manual's version"
[ "$(echo 'print(1 + 1)' | "$host" -)" = 2 ] && ok "- runs stdin" ||
  bad "- runs stdin"
[ "$("$host" -e 'print(...)' a b)" = "$(printf 'a\tb')" ] &&
  ok "-e runs a chunk with its arguments" || bad "-e"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
