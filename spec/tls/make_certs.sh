#!/bin/sh
# Makes the TLS tests' certificates with the openssl command, in DIR:
#   ca.pem/ca.key        a throwaway CA ("tapio test CA")
#   server.pem/.key      CN localhost, subjectAltName localhost, 127.0.0.1, ::1
#   expired, future      the same names, valid only in 2020 / only from 2098
#   other                CN and subjectAltName other.example
#   noip                 localhost only (no address in subjectAltName)
#   client               CN "tapio client", for client-certificate tests
#   self.pem/.key        self-signed, localhost and 127.0.0.1
#   ca2.pem              another CA, which signed nothing of the above
#   rsa.pem/.key         RSA 2048, localhost and 127.0.0.1 (signed by ca)
# Keys are EC P-256 (fast to make) unless named rsa. Made in a temporary
# directory and renamed into place, so that concurrent runs never see half
# of them. A complete set in DIR is kept; with --fresh only one this very
# script made (its checksum is in DIR/done), so that a set made by an
# older script is renewed while a set that tests of a concurrent run are
# reading is never swapped for an equal one under them (they would read
# ca.pem of one set and server.pem of another, signed by another CA).
# Prints DIR.
#   make_certs.sh DIR [--fresh]
set -eu
dir=$1
mode=${2:-}
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac # the work below is in $tmp
stamp=$(cksum <"$0") # before the cd: $0 may be relative

# Whether DIR holds a set to keep.
usable() {
  [ -f "$dir/done" ] &&
    { [ "$mode" != --fresh ] || [ "$(cat "$dir/done")" = "$stamp" ]; }
}
if usable; then
  echo "$dir"
  exit 0
fi
tmp=$(mktemp -d "${dir%/}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
          -out "$1" 2>/dev/null; }

ca() { # name cn
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=$2" -days 36500 \
    -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign -out "$1.pem" 2>/dev/null
}
ca ca "tapio test CA"
ca ca2 "tapio other CA"

cat > ca.cnf <<CNF
[ca]
default_ca = test
[test]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[any]
commonName = supplied
CNF
: > index.txt
echo 1000 > serial

sign() { # name cn san start end [keyfile-maker]
  "${6:-key}" "$1.key"
  if [ -n "$3" ]; then
    openssl req -new -key "$1.key" -subj "/CN=$2" \
      -addext "subjectAltName=$3" -out "$1.csr" 2>/dev/null
  else
    openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr" 2>/dev/null
  fi
  openssl ca -batch -config ca.cnf -cert ca.pem -keyfile ca.key -notext \
    -in "$1.csr" -out "$1.pem" -startdate "$4" -enddate "$5" 2>/dev/null
}
rsakey() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 \
             -out "$1" 2>/dev/null; }
names="DNS:localhost,IP:127.0.0.1,IP:::1"
sign server localhost "$names" 20200101000000Z 20991231000000Z
sign expired localhost "$names" 20200101000000Z 20200102000000Z
sign future localhost "$names" 20980101000000Z 20991231000000Z
sign other other.example "DNS:other.example" 20200101000000Z 20991231000000Z
sign noip localhost "DNS:localhost" 20200101000000Z 20991231000000Z
sign client "tapio client" "" 20200101000000Z 20991231000000Z
sign rsa localhost "$names" 20200101000000Z 20991231000000Z rsakey
key self.key
openssl req -x509 -new -key self.key -subj /CN=localhost -days 36500 \
  -addext "subjectAltName=$names" -out self.pem 2>/dev/null
rm -f ./*.csr index.txt* serial* 10*.pem ca.cnf
echo "$stamp" >done

mkdir -p "$(dirname "$dir")"
if ! usable; then # (a concurrent run may have made one meanwhile: kept)
  if [ -e "$dir" ]; then
    old=$(mktemp -d "${dir%/}.old.XXXXXX")
    mv "$dir" "$old/" && rm -rf "$old"
  fi
  # a concurrent run's set that came in first is kept: mv then puts this
  # one inside it, where it is removed
  mv "$tmp" "$dir" 2>/dev/null || true
fi
trap - EXIT
rm -rf "$tmp" "$dir/${tmp##*/}"
echo "$dir"
