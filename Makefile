# Thin wrapper: set-up, then CMake and ctest do the work.
BUILD ?= build
JOBS ?= $(shell nproc)
# Debian packages the build, the tests and the benchmark need.
PKGS = cmake make gcc pkg-config libev-dev libc-ares-dev libssl-dev openssl \
  valgrind util-linux procps \
  lua5.4 liblua5.4-dev luajit libluajit-5.1-dev lua-busted \
  python3 python3-cffi python3-websockets lua-luv python3-uvloop luarocks \
  groff-base redis-tools curl iproute2
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps configure build run test bench install clean

all: build

deps:
	@missing=$$(for p in $(PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
	  echo "installing missing packages:" $$missing; \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

configure: deps
	cmake -S . -B $(BUILD) -DTAPIO_WERROR=$${TAPIO_WERROR:-ON} >/dev/null

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# The main demo: the reference's echo server and client, in Lua.
run: build
	@./examples/run_demo.sh $(BUILD)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

bench: build
	./bench/run.sh $(BUILD)

# The library, headers, pkg-config files, CMake package, the tapio program
# and its manual page, under PREFIX (cmake --install does it).
PREFIX ?= /usr/local
install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
