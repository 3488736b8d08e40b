#!/usr/bin/env bash
# The rockspec as a Lua user runs it: `luarocks make` in a copy of the
# checkout, for Lua 5.4 and for LuaJIT, into a temporary tree; then a
# script that only has that tree's paths requires "tapio" and runs a
# server and a client through it. Also: the rockspec lists every C source
# the module needs (src/*.c and the binding's lua/*.c), so a file added
# to the core without it fails here by name rather than at require.
# Usage: test_rockspec.sh SOURCE_DIR
set -uo pipefail
src=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rockspec=$(cd "$src" && ls tapio-*.rockspec | head -1)
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }

# The sources the rockspec names, against the ones on disk.
listed=$(grep -o '"\(src\|lua\)/[a-z_]*\.c"' "$src/$rockspec" | tr -d '"' |
         sort)
needed=$(cd "$src" && ls src/*.c lua/*.c | grep -v -e lua/host.c \
         -e lua/host_api.c | sort)
if [ "$listed" = "$needed" ]; then
  ok "the rockspec lists every C source"
else
  bad "the rockspec's C sources differ from src/ and lua/:"
  diff <(echo "$listed") <(echo "$needed")
fi

cat >"$tmp/use.lua" <<'LUA'
local tapio = require "tapio"
assert(package.searchpath("tapio.core", package.cpath):find(arg[1], 1, true),
       "tapio.core from elsewhere than the tree")
local got = tapio.run(function()
  local loop = tapio.get_running_loop()
  local server = loop:create_server(function()
    return { connection_made = function(self, t) self.t = t end,
             data_received = function(self, d) self.t:write(d) end }
  end, "127.0.0.1", 0)
  local done = loop:create_future()
  local t = loop:create_connection(function()
    return { data_received = function(_, d) done:set_result(d) end }
  end, "127.0.0.1", server:addresses()[1].port)
  t:write("ping")
  local d = done:await()
  t:close()
  server:close()
  return d
end)
assert(got == "ping", got)
print("tapio " .. tapio.version .. " from the tree")
LUA

# flavour: lua version, interpreter, extra make variables
build() {
  local ver=$1 interp=$2; shift 2
  local tree=$tmp/tree$ver copy=$tmp/src$ver
  mkdir -p "$copy"
  cp -r "$src/capi" "$src/src" "$src/lua" "$src/$rockspec" "$copy/"
  if ! (cd "$copy" && luarocks --lua-version "$ver" --tree "$tree" make \
          "$rockspec" "$@" >"$tmp/log$ver" 2>&1); then
    bad "luarocks make for $interp"
    tail -20 "$tmp/log$ver"
    return
  fi
  ok "luarocks make for $interp"
  if (cd "$tmp" && eval "$(luarocks --lua-version "$ver" --tree "$tree" \
        path)" && "$interp" use.lua "$tree"); then
    ok "require \"tapio\" from the tree, $interp"
  else
    bad "require \"tapio\" from the tree, $interp"
  fi
}

build 5.4 lua5.4
if [ -f /usr/include/luajit-2.1/lua.h ] && command -v luajit >/dev/null; then
  build 5.1 luajit LUA_INCDIR=/usr/include/luajit-2.1
else
  bad "LuaJIT and its headers (luajit, libluajit-5.1-dev) are missing"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
