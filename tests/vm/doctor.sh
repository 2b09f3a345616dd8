# armorctl doctor against the guest's real state: sourced by scenarios.sh
# (it has pass, fail, wait_for). Run after the upgrade to this tree's
# armord, before the burst scenarios enable journald's audit socket.

doctor_line() { # doctor_line OUTPUT LEVEL CHECK TEXT: the check's line says TEXT at LEVEL
  grep -E "^$2 +$3: " <<<"$1" | grep -qF -- "$4"
}

doctor_vm() {
  local out rc want_audit runc_says parser_version bad=""
  out=$(armorctl doctor 2>&1); rc=$?
  sed 's/^/INFO doctor: /' <<<"$out"
  # Each line against what the guest's own tools say.
  doctor_line "$out" ok apparmor-enabled "enabled in this boot" || bad+=" apparmor-enabled"
  doctor_line "$out" ok securityfs "securityfs is mounted" || bad+=" securityfs"
  parser_version=$(apparmor_parser --version | head -n 1)
  doctor_line "$out" ok parser "$parser_version" || bad+=" parser"
  doctor_line "$out" ok armord "is running and ready" || bad+=" armord"
  doctor_line "$out" ok apparmor-audit "audit mode is normal" || bad+=" apparmor-audit"
  if systemctl is-active -q systemd-journald-audit.socket; then
    want_audit=ok
    doctor_line "$out" ok audit-socket "journald reads the audit transport" || bad+=" audit-socket"
  else
    want_audit=error
    doctor_line "$out" error audit-socket "is not active" || bad+=" audit-socket"
  fi
  # AppArmor 4 confines runc in a profile of its own; AppArmor 3 does not.
  if grep -q '^runc ' /sys/kernel/security/apparmor/profiles; then
    runc_says="runs confined by AppArmor"
  else
    runc_says="is not confined by AppArmor"
  fi
  doctor_line "$out" ok runtime "runc ($(command -v runc)) $runc_says" || bad+=" runtime"
  echo "INFO doctor: exit $rc; audit socket $want_audit; runc $runc_says"
  # Exit 1 exactly when a line is an error.
  local want_rc=0
  if grep -qE '^error ' <<<"$out"; then want_rc=1; fi
  if [ -z "$bad" ] && [ "$rc" = "$want_rc" ]; then
    pass 21-doctor
  else
    fail 21-doctor "lines not as the guest is:$bad (exit $rc)"
  fi
  # Where the audit socket is off (stock trixie), the fix doctor prints
  # works: applied as printed, the next doctor run says ok.
  if [ "$want_audit" = error ]; then
    local fix
    fix=$(grep -A1 -E '^error +audit-socket: ' <<<"$out" | sed -n 's/^ *fix: //p')
    bash -c "$fix" >/dev/null 2>&1
    armorctl wait --timeout 60s >/dev/null 2>&1
    out=$(armorctl doctor 2>&1)
    if doctor_line "$out" ok audit-socket "journald reads the audit transport"; then
      pass 21-doctor-fix
    else
      fail 21-doctor-fix "after \`$fix\`: $(grep audit-socket <<<"$out")"
    fi
  fi
}
