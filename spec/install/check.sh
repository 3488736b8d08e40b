#!/usr/bin/env bash
# Installs the build into a fresh prefix, then builds and runs a consumer
# three ways: CMake's find_package with the shared and the static target,
# and a plain compiler line from pkg-config.
# Usage: check.sh BUILD_DIR VERSION
set -euo pipefail
build=$1 version=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
mkdir "$tmp/src"
sed "s/@VERSION@/$version/" "$here/consumer.c" >"$tmp/src/consumer.c"
cp "$here/CMakeLists.txt" "$here/../../examples/host/frame_host.c" \
  "$here/../../examples/host/game_host.c" "$tmp/src/"
cmake -S "$tmp/src" -B "$tmp/b" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/b" >/dev/null
libdir=$(dirname "$(find "$tmp/prefix" -name 'libtapio.so*' | head -1)")
LD_LIBRARY_PATH=$libdir "$tmp/b/with_shared"
"$tmp/b/with_static"
pc=$(dirname "$(find "$tmp/prefix" -name tapio.pc)")
gcc -o "$tmp/with_pc" "$tmp/src/consumer.c" \
  $(PKG_CONFIG_PATH=$pc pkg-config --cflags --libs tapio)
LD_LIBRARY_PATH=$libdir "$tmp/with_pc"
passed=3
# A Lua host against the installed tapio_host.h and libtapio_lua5.4.a,
# built as tapio_host.h says: pkg-config tapio-lua5.4, and CMake's
# tapio::tapio_lua5.4 (the consumer project builds it when exported).
if [ -f "$libdir/libtapio_lua5.4.a" ]; then
  gcc -o "$tmp/frame_host" "$here/../../examples/host/frame_host.c" \
    $(PKG_CONFIG_PATH=$pc pkg-config --cflags --libs tapio-lua5.4)
  echo 'served = select("#", require("tapio").version)' >"$tmp/one.lua"
  for host in "$tmp/frame_host" "$tmp/b/lua_host"; do
    out=$(LD_LIBRARY_PATH=$libdir "$host" "$tmp/one.lua" 2)
    case $out in "frames 2 "*"served 1 "*) ;; *) echo "$host: $out"; exit 1;; esac
  done
  [ -f "$tmp/prefix/share/man/man1/tapio.1" ] && [ -x "$tmp/prefix/bin/tapio" ]
  passed=5
fi
# A LuaJIT host (a game engine's shape) the same two ways: pkg-config
# tapio-luajit and CMake's tapio::tapio_luajit.
if pkg-config --exists luajit; then
  [ -f "$libdir/libtapio_luajit.a" ] || { echo "no libtapio_luajit.a"; exit 1; }
  gcc -o "$tmp/game_host" "$here/../../examples/host/game_host.c" \
    $(PKG_CONFIG_PATH=$pc pkg-config --cflags --libs tapio-luajit)
  cat >"$tmp/game.lua" <<'EOF'
assert(jit and require("tapio").version and loop)
return {update = function(_, frame) return frame == 2 end,
        summary = function() return "ok" end}
EOF
  for host in "$tmp/game_host" "$tmp/b/luajit_host"; do
    out=$(LD_LIBRARY_PATH=$libdir "$host" "$tmp/game.lua")
    [ "$out" = "frames 2 ok" ] || { echo "$host: $out"; exit 1; }
  done
  passed=$((passed + 2))
fi
echo "$passed passed, 0 failed"
