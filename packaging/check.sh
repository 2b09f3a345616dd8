#!/usr/bin/env bash
# Build both packages and inspect them; verify the units; check the
# cloud-init examples against cloud-init's schema. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # check NAME COMMAND...: the command's success is the check
  local name="$1"; shift
  if "$@" >/dev/null 2>&1; then echo "ok   $name"; else echo "FAIL $name"; fail=1; fi
}
has() { grep -qE -- "$2" <<<"$1"; }

bash packaging/build.sh deb >/dev/null
bash packaging/build.sh rpm >/dev/null
deb=$(ls target/packages/armord_*_amd64.deb)
rpm=$(ls target/packages/armord-*.x86_64.rpm)

echo "== $deb"
info=$(dpkg-deb -I "$deb"); files=$(dpkg-deb -c "$deb")
echo "$info" | sed -n '/Package:/,/Description:/p'
ctl=$(mktemp -d); trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl/DEBIAN"
check "deb Depends: apparmor" has "$info" 'Depends:.*apparmor'
check "deb Depends: systemd" has "$info" 'Depends:.*systemd'
check "deb conffile /etc/armord/armord.toml" grep -qx /etc/armord/armord.toml "$ctl/DEBIAN/conffiles"
for f in usr/bin/armord usr/bin/armorctl usr/lib/systemd/system/armord.service usr/lib/tmpfiles.d/armord.conf \
         usr/share/dbus-1/system.d/org.armord.Armord1.conf usr/lib/systemd/catalog/armord.catalog \
         usr/share/man/man8/armord.8 usr/share/man/man1/armorctl.1 usr/share/man/man1/armorctl-wait.1 \
         usr/share/bash-completion/completions/armorctl usr/share/zsh/vendor-completions/_armorctl \
         usr/share/fish/vendor_completions.d/armorctl.fish usr/lib/systemd/system-preset/80-armord.preset \
         usr/share/doc/armord/examples/profiles/custom.deny-write \
         usr/share/doc/armord/examples/kubelet.service.d/10-armord.conf etc/armord/profiles.d/README \
         usr/share/armord/armord-alerts.yml usr/share/armord/armord-alerts.test.yml; do
  check "deb has /$f" has "$files" " \./$f(\.gz)?\$"
done
check "deb postinst enables through deb-systemd-helper" grep -q 'deb-systemd-helper enable armord.service' "$ctl/DEBIAN/postinst"
check "deb prerm stops on remove" grep -q 'deb-systemd-invoke stop armord.service' "$ctl/DEBIAN/prerm"
check "deb postrm purge removes state and cache" grep -q 'rm -rf /var/lib/armord /var/cache/armord' "$ctl/DEBIAN/postrm"
check "deb scripts never unload a profile" bash -c "! grep -qE 'apparmor_parser|\.remove|aa-remove' $ctl/DEBIAN/postinst $ctl/DEBIAN/prerm $ctl/DEBIAN/postrm"

# Debian's own package checker: no error and no warning (overrides, each
# with its reason, in packaging/debian/lintian-overrides).
if lint=$(lintian --fail-on error,warning --display-level '>=warning' "$deb" 2>&1 | grep -v 'running with root privileges'; exit "${PIPESTATUS[0]}"); then
  echo "ok   lintian${lint:+: $lint}"
else
  echo "FAIL lintian:"; echo "$lint" | sed 's/^/     /'; fail=1
fi

echo "== $rpm"
rinfo=$(rpm -qpil --scripts "$rpm" 2>/dev/null); rreq=$(rpm -qpR "$rpm" 2>/dev/null); rconf=$(rpm -qpc "$rpm" 2>/dev/null)
echo "$rinfo" | sed -n '1,13p'
check "rpm Requires: apparmor-parser" has "$rreq" '^apparmor-parser'
check "rpm Requires: systemd" has "$rreq" '^systemd'
check "rpm config /etc/armord/armord.toml" has "$rconf" '^/etc/armord/armord.toml$'
for f in /usr/bin/armord /usr/bin/armorctl /usr/lib/systemd/system/armord.service /usr/share/dbus-1/system.d/org.armord.Armord1.conf \
         /usr/lib/tmpfiles.d/armord.conf /usr/lib/systemd/catalog/armord.catalog /usr/share/man/man8/armord.8 \
         /usr/share/armord/armord-alerts.yml; do
  check "rpm has $f" has "$rinfo" "^$f\$"
done
check "rpm %post applies the preset" has "$rinfo" 'systemctl --no-reload preset armord.service'
check "rpm %preun disables and stops on erase" has "$rinfo" 'disable --now armord.service'
check "rpm %postun restarts on upgrade" has "$rinfo" 'try-restart armord.service'

echo "== systemd units"
root=$(mktemp -d)
dpkg-deb -x "$deb" "$root"
mkdir -p "$root/usr/lib/systemd" "$root/bin" "$root/etc/systemd/system/kubelet.service.d" "$root/etc/systemd/system/containerd.service.d"
cp -rn /usr/lib/systemd/system "$root/usr/lib/systemd/"
cp "$(type -P kill)" "$root/bin/kill"
cp "$(type -P true)" "$root/bin/true"
for u in kubelet containerd; do
  printf '[Unit]\nDescription=%s stand-in\n[Service]\nExecStart=/bin/true\n' "$u" > "$root/etc/systemd/system/$u.service"
  cp "systemd/$u.service.d/10-armord.conf" "$root/etc/systemd/system/$u.service.d/"
done
for u in "$root/usr/lib/systemd/system/armord.service" "$root/etc/systemd/system/kubelet.service" "$root/etc/systemd/system/containerd.service"; do
  if out=$(systemd-analyze verify --man=no --root="$root" "$u" 2>&1) && [ -z "$out" ]; then
    echo "ok   systemd-analyze verify $(basename "$u")"
  else
    echo "FAIL systemd-analyze verify $(basename "$u"): $out"; fail=1
  fi
done
exposure=$(systemd-analyze security --offline=true --root="$root" "$root/usr/lib/systemd/system/armord.service" 2>/dev/null | tail -n 1 || true)
echo "info $exposure"
check "kubelet is ordered after armord" bash -c "systemctl --root='$root' show -p After kubelet.service 2>/dev/null | grep -q armord.service || grep -q 'After=armord.service' '$root/etc/systemd/system/kubelet.service.d/10-armord.conf'"
rm -rf "$root"

echo "== Prometheus rules (promtool, from Debian's prometheus)"
# The rules as the .deb installs them: checked, and each alert's unit
# tests (firing and not firing) run against them.
prom=$(mktemp -d)
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$prom" ./usr/share/armord
for f in armord-alerts.yml armord-alerts.test.yml; do
  check "deb's $f is the tree's" cmp "$prom/usr/share/armord/$f" "packaging/prometheus/$f"
done
if out=$(promtool check rules "$prom/usr/share/armord/armord-alerts.yml" 2>&1); then
  echo "ok   promtool check rules: $(grep -o '[0-9]* rules found' <<<"$out")"
else
  echo "FAIL promtool check rules:"; echo "$out" | sed 's/^/     /'; fail=1
fi
# Every alert has a test (promtool passes a file that tests none of them).
for a in $(sed -n 's/^ *- alert: //p' packaging/prometheus/armord-alerts.yml); do
  check "alert $a has a promtool test" grep -q "alertname: $a\$" packaging/prometheus/armord-alerts.test.yml
done
if out=$(cd "$prom/usr/share/armord" && promtool test rules armord-alerts.test.yml 2>&1); then
  echo "ok   promtool test rules: $(grep -c 'alertname:' packaging/prometheus/armord-alerts.test.yml) alert evaluations, $(grep -c 'expr: armord:' packaging/prometheus/armord-alerts.test.yml) recording-rule checks"
else
  echo "FAIL promtool test rules:"; echo "$out" | sed 's/^/     /'; fail=1
fi
rm -rf "$prom"

echo "== cloud-init examples"
for f in cloud-init/*.yaml; do
  if out=$(cloud-init schema --config-file "$f" 2>&1); then echo "ok   $out"; else echo "FAIL $f: $out"; fail=1; fi
done
exit "$fail"
