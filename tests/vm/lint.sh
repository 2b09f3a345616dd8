# The profile lints shown true on a real kernel: sourced by scenarios.sh
# after containers.sh (pass, fail, wait_for, loaded, ctr_rootfs, CTR, P).

lint_shown() { # lint_shown PROFILE NAME: armorctl status warns it
  armorctl status 2>/dev/null | grep '^warning: ' | grep "$1" | grep -qF "[$2]"
}

task_status() { ctr task ls 2>/dev/null | awk -v t="$1" '$1 == t { print $3 }'; }

lint_vm() {
  systemctl start containerd >/dev/null 2>&1 || true
  # deny-in-complain: the lint says a deny rule still blocks in complain
  # mode, and it does.
  cat > "$P/custom.lintdeny" <<'PROFILE'
abi <abi/3.0>,
profile custom.lintdeny flags=(complain) {
  /** rwmix,
  deny /tmp/lint-denied w,
}
PROFILE
  rm -f /tmp/lint-denied /tmp/lint-other
  if wait_for 30 lint_shown custom.lintdeny deny-in-complain \
      && armorctl validate "$P/custom.lintdeny" | grep -qF '[deny-in-complain]' \
      && grep -q '^custom.lintdeny (complain)' /sys/kernel/security/apparmor/profiles \
      && aa-exec -p custom.lintdeny -- /bin/sh -c 'echo x > /tmp/lint-other' \
      && ! aa-exec -p custom.lintdeny -- /bin/sh -c 'echo x > /tmp/lint-denied' 2>/dev/null \
      && [ -e /tmp/lint-other ] && [ ! -e /tmp/lint-denied ]; then
    pass 22-lint-deny-in-complain
  else
    fail 22-lint-deny-in-complain "$(armorctl status 2>&1 | grep lintdeny | tr '\n' ' '); other $( [ -e /tmp/lint-other ] && echo written ); denied $( [ -e /tmp/lint-denied ] && echo WRITTEN )"
  fi
  rm -f "$P/custom.lintdeny"

  # runtime-signal: a container profile that does not let the runtime
  # signal it. Where AppArmor confines runc (AppArmor 4), the lint fires
  # and the runtime's stop (SIGKILL) is refused; with the rule added the
  # same container stops at once. Where it does not, the lint is quiet.
  cat > "$P/custom.lintsig" <<'PROFILE'
abi <abi/3.0>,
include <tunables/global>
profile custom.lintsig flags=(attach_disconnected) {
  include <abstractions/base>
  /** rwmix,
}
PROFILE
  wait_for 30 loaded custom.lintsig || true
  ctr_rootfs "$CTR/lintsig-rootfs"
  ctr run -d --rootfs --apparmor-profile custom.lintsig "$CTR/lintsig-rootfs" vm-lintsig \
    /bin/sh -c 'sleep 600' >/dev/null 2>&1
  wait_for 30 bash -c "ctr task ls | grep -q '^vm-lintsig .*RUNNING'" || true
  local t0 after stopped_in=""
  if grep -q '^runc ' /sys/kernel/security/apparmor/profiles; then
    if wait_for 30 lint_shown custom.lintsig runtime-signal; then
      t0=$(date +%s)
      ctr task kill -s SIGKILL vm-lintsig >/dev/null 2>&1
      sleep 10
      after=$(task_status vm-lintsig)
      echo "INFO lint-runtime-signal: without the rule, 10 s after ctr task kill -s SIGKILL: ${after:-gone}; $(journalctl --since "@$t0" -o cat --no-pager | grep 'apparmor="DENIED"' | grep 'operation="signal"' | grep -o 'profile="[^"]*" pid=[0-9]* comm="[^"]*" requested_mask="[^"]*" denied_mask="[^"]*" signal=[a-z]* peer="[^"]*"' | head -n 1)"
      # The fix the lint gives, applied: the same container stops at once.
      sed -i 's|^  /\*\* rwmix,|  signal (receive) peer=runc,\n  /** rwmix,|' "$P/custom.lintsig"
      wait_for 30 bash -c "! armorctl status 2>/dev/null | grep custom.lintsig | grep -qF '[runtime-signal]'" || true
      t0=$(date +%s%N)
      ctr task kill -s SIGKILL vm-lintsig >/dev/null 2>&1
      if wait_for 10 bash -c "[ \"\$(ctr task ls 2>/dev/null | awk '\$1 == \"vm-lintsig\" { print \$3 }')\" != RUNNING ]"; then
        stopped_in=$(( ($(date +%s%N) - t0) / 1000000 ))
      fi
      echo "INFO lint-runtime-signal: with the rule, stopped in ${stopped_in:-never} ms"
      if [ "$after" = RUNNING ] && [ -n "$stopped_in" ]; then
        pass 22-lint-runtime-signal
      else
        fail 22-lint-runtime-signal "without the rule: ${after:-gone}; with it: ${stopped_in:-not stopped}"
      fi
    else
      fail 22-lint-runtime-signal "no warning: $(armorctl status 2>&1 | grep lintsig | tr '\n' ' ')"
    fi
  else
    ctr task kill -s SIGKILL vm-lintsig >/dev/null 2>&1
    if wait_for 10 bash -c "[ \"\$(ctr task ls 2>/dev/null | awk '\$1 == \"vm-lintsig\" { print \$3 }')\" != RUNNING ]" \
        && ! lint_shown custom.lintsig runtime-signal; then
      echo "INFO lint-runtime-signal: runc is not confined here: no warning, and the container stopped"
      pass 22-lint-runtime-signal
    else
      fail 22-lint-runtime-signal "$(task_status vm-lintsig); $(armorctl status 2>&1 | grep lintsig | tr '\n' ' ')"
    fi
  fi
  ctr task kill -s SIGKILL vm-lintsig >/dev/null 2>&1
  wait_for 30 ctr task delete vm-lintsig
  ctr container delete vm-lintsig >/dev/null 2>&1
  rm -f "$P/custom.lintsig"
}
