#!/bin/sh
# spec/tls/make_certs.sh as concurrent ctest runs in one build directory
# use it (tls.certs with --fresh, a test on first use without): a set in
# place is not swapped for another under a test reading it (ca.pem of one
# set, server.pem of the next, which that CA did not sign), and a set an
# older script made is renewed. On a copy of the fixture's set (making
# one takes a second or two).
#   make_certs_check.sh MAKE_CERTS CERTS_DIR
set -eu
make=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir=$work/certs

fail() {
  echo "make_certs_check: $*" >&2
  exit 1
}
signed() { # the server's certificate is the CA's
  openssl verify -CAfile "$dir/ca.pem" "$dir/server.pem" >/dev/null 2>&1 ||
    fail "server.pem is not signed by ca.pem"
}

sh "$make" "$2" >/dev/null # the fixture's, as this script makes it
cp -R "$2" "$dir"

# --fresh (tls.certs) keeps a set this script made
cp "$dir/ca.pem" "$work/ca.before"
sh "$make" "$dir" --fresh >/dev/null
cmp -s "$work/ca.before" "$dir/ca.pem" ||
  fail "--fresh replaced the set this script made"

# a set of another script: kept as it is, renewed by --fresh
echo "another script" >"$dir/done"
sh "$make" "$dir" >/dev/null
cmp -s "$work/ca.before" "$dir/ca.pem" || fail "a complete set was replaced"
sh "$make" "$dir" --fresh >/dev/null
! cmp -s "$work/ca.before" "$dir/ca.pem" ||
  fail "--fresh kept a set of another script"
signed
