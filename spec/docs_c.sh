#!/bin/sh
# Every ```c block of README.md and lua/README.md, and the usage sketch
# of lua/tapio_host.h, compiled against the built library (the Lua ones
# run in spec/docs_spec.lua). A block with a main() is a whole program:
# compiled and linked. Any other is a fragment: compiled as a function's
# body after spec/docs_c_prelude.h, which declares the names fragments
# take as given (loop, opts, ...).
# usage: docs_c.sh CC SOURCE_DIR LUA_INCLUDE_DIR LIBTAPIO
set -eu
cc=$1 src=$2 luainc=$3 lib=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags="-std=c11 -Wall -Wextra -Wno-unused-parameter -Werror -I$src/capi
  -I$src/lua -I$luainc"

# The usage sketch of lua/tapio_host.h (its first comment's lines indented
# by " *   "), as a fragment in $work/lua_tapio_host.h_LINE.c.
host_usage() {
  awk -v out="$work/lua_tapio_host.h" '
    /\*\// { exit }
    /^ \*   / { if (!name) { name = out "_" NR ".c"; print name }
                sub(/^ \*   /, ""); print > name }
  ' "$1"
}

# Splits FILE's ```c blocks into $work/NAME_LINE.c (LINE: the block's
# first line in FILE) and lists them.
extract() {
  awk -v out="$work/$2" '
    /^```c[ \t]*$/ { name = out "_" (NR + 1) ".c"; print name; next }
    /^```/ { name = ""; next }
    name != "" { print > name }
  ' "$1"
}

count=0
for doc in README.md lua/README.md lua/tapio_host.h; do
  case $doc in
    *.h) blocks=$(host_usage "$src/$doc") ;;
    *) blocks=$(extract "$src/$doc" "$(echo "$doc" | tr / _)") ;;
  esac
  for block in $blocks; do
    line=${block##*_}; line=${line%.c}
    wrapped=$block.wrapped.c
    if grep -q '^int main' "$block"; then
      { echo "#line $line \"$doc\""; cat "$block"; } > "$wrapped"
      what=linked
      out="-o $work/prog $lib"
    else
      { echo "#include \"$src/spec/docs_c_prelude.h\""
        echo "void docs_fragment(void) {"
        echo "#line $line \"$doc\""
        cat "$block"
        echo "}"; } > "$wrapped"
      what=compiled
      out="-c -o $work/fragment.o"
    fi
    # shellcheck disable=SC2086
    if ! $cc $flags "$wrapped" $out; then
      echo "$doc:$line: this C block does not build" >&2
      exit 1
    fi
    echo "$doc:$line: $what"
    count=$((count + 1))
  done
done
[ "$count" -gt 0 ] || { echo "no C block found" >&2; exit 1; }
