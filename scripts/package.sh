#!/usr/bin/env bash
# Builds pylon_crdt packages for a stock Debian 12 Postgres server, one per major, installable
# without Rust: target/package/postgresql-<major>-pylon-crdt_<version>_amd64.deb puts the
# library and the SQL files where Debian's (and PGDG's) postgresql-<major> look for them
# (/usr/lib/postgresql/<major>/lib, /usr/share/postgresql/<major>/extension), and a .tar.gz
# beside it holds the same files for other layouts. Release builds by default (`cargo pgrx
# package`, fat LTO: about 5 minutes each on 2 cores).
#   scripts/package.sh [--profile PROFILE] [MAJOR ...]     default: release; 15 14 16 17 18
# The package test (tests/tools/package_deb.sh) passes `--profile dev`: it packages the build
# the tests already made and installed, so it tests the package (its layout, dpkg, a server
# loading it from its own files) without compiling the extension a fourth time.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/cargo-env.sh

profile=release
if [ "${1:-}" = --profile ]; then
  profile=${2:?"--profile needs a cargo profile name"}
  shift 2
fi
majors=("$@")
((${#majors[@]})) || majors=(15 14 16 17 18)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
out=target/package

for major in "${majors[@]}"; do
  pg_config=$(scripts/postgres-versions.sh --print-pg-config "$major")
  build="$out/build-pg$major"
  rm -rf "$build"
  cargo pgrx package --profile "$profile" --pg-config "$pg_config" --out-dir "$build" >&2

  # `cargo pgrx package` lays files out under the build server's own paths; move them to
  # Debian's.
  name="postgresql-$major-pylon-crdt"
  root="$out/$name"
  rm -rf "$root"
  install -d "$root/DEBIAN" "$root/usr/lib/postgresql/$major/lib" "$root/usr/share/postgresql/$major/extension"
  install -m 755 "$(find "$build" -name pylon_crdt.so)" "$root/usr/lib/postgresql/$major/lib/"
  find "$build" -path '*/extension/pylon_crdt*' -exec install -m 644 {} "$root/usr/share/postgresql/$major/extension/" \;
  cat >"$root/DEBIAN/control" <<CONTROL
Package: $name
Version: $version
Architecture: amd64
Maintainer: pylon_crdt developers <dev@pylon-crdt.invalid>
Depends: postgresql-$major, libc6 (>= 2.34), libgcc-s1
Section: database
Priority: optional
Description: Loro CRDT documents inside PostgreSQL $major
 One Loro document per (entity, row), merged inside the backend in the caller's transaction.
CONTROL
  deb="$out/${name}_${version}_amd64.deb"
  dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
  tar -C "$root" -czf "$out/${name}_${version}_amd64.tar.gz" usr
  echo "$deb"
done
