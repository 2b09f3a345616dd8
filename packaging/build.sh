#!/usr/bin/env bash
# Build armord's .deb or .rpm from a clean checkout:
#   packaging/build.sh deb|rpm      → target/packages/
# The packaging tools come from crates.io, installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:?usage: packaging/build.sh deb|rpm}"
CARGO_DEB_VERSION=3.8.0
CARGO_RPM_VERSION=0.21.1

cargo build --release --locked --bins
target/release/armorctl generate-assets target/assets
mkdir -p target/packages target/packaging
case "$kind" in
  deb)
    cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION" \
      || cargo install --locked --version "$CARGO_DEB_VERSION" cargo-deb
    cargo deb --no-build --output target/packages/
    ;;
  rpm)
    cargo generate-rpm --version 2>/dev/null | grep -q "$CARGO_RPM_VERSION" \
      || cargo install --locked --version "$CARGO_RPM_VERSION" cargo-generate-rpm
    python3 packaging/rpm-assets.py Cargo.toml > target/packaging/rpm-assets.toml
    cargo generate-rpm --metadata-overwrite target/packaging/rpm-assets.toml --output target/packages/
    ;;
  *)
    echo "usage: packaging/build.sh deb|rpm" >&2
    exit 2
    ;;
esac
ls -l target/packages/
