#!/usr/bin/env bash
# Install armord's .deb on a Debian/Ubuntu machine with AppArmor and run the
# smoke scenario. Used by the Vagrantfile and by the VM test (tests/vm/), so
# both walk the same path. Prints one "PASS name" or "FAIL name: why" line per
# check and exits non-zero when any check fails.
#   provision.sh PATH/TO/armord_*.deb
set -u
deb="${1:?usage: provision.sh armord.deb}"
failed=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; failed=1; }

if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" != "Y" ]; then
  fail apparmor-enabled "the kernel has no AppArmor"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if dpkg -i "$deb" >/tmp/armord-install.log 2>&1; then
  pass install
else
  fail install "$(tail -n 5 /tmp/armord-install.log)"
  exit 1
fi

install -m 0644 /usr/share/doc/armord/examples/profiles/custom.* /etc/armord/profiles.d/
systemctl restart armord.service
if armorctl wait --timeout 120s; then pass ready; else fail ready "armorctl wait"; fi

for p in custom.deny-write custom.nginx-allow custom.complain-trial; do
  if grep -q "^$p " /sys/kernel/security/apparmor/profiles; then
    pass "loaded-$p"
  else
    fail "loaded-$p" "not in /sys/kernel/security/apparmor/profiles"
  fi
done
if grep -q "^custom.complain-trial (complain)" /sys/kernel/security/apparmor/profiles; then
  pass mode-complain
else
  fail mode-complain "custom.complain-trial is not in complain mode"
fi
status=$(systemctl show -p StatusText --value armord.service)
case "$status" in
  *" loaded, 0 invalid, 0 refused, 0 deferred"*) pass status-text ;;
  *) fail status-text "$status" ;;
esac

exit "$failed"
