#!/usr/bin/env python3
"""Turn the one asset list ([package.metadata.deb] assets in Cargo.toml) into
cargo-generate-rpm's form, printed as a TOML file for --metadata-overwrite."""
import sys
import tomllib

with open(sys.argv[1] if len(sys.argv) > 1 else "Cargo.toml", "rb") as f:
    meta = tomllib.load(f)["package"]["metadata"]["deb"]


def q(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


print("assets = [")
for src, dest, mode in meta["assets"]:
    dest = "/" + dest.lstrip("/")
    if dest.startswith("/usr/share/lintian/"):
        continue  # Debian's package checker only
    extra = ""
    if dest.startswith("/etc/"):
        extra = ', config = "noreplace"'
    elif dest.startswith("/usr/share/doc/"):
        extra = ", doc = true"
    print(f"    {{ source = {q(src)}, dest = {q(dest)}, mode = {q(mode)}{extra} }},")
print("]")
