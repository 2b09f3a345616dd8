#!/usr/bin/env bash
# The end-to-end scenarios, run inside the guest as a oneshot unit at each
# boot, for each suite of the matrix (/opt/armord-test/suite). Boot 1 runs
# vagrant/provision.sh (an older version + smoke), scenarios 1-6 and 11, the
# upgrade to this tree's version, the containers (12-16, containers.sh),
# node_exporter and AppArmor 4 rules, then prepares the reboot; boot 2 runs
# 7-10 and, on bookworm, the .rpm. One "PASS name" or
# "FAIL name: why" line per scenario; on a failure the armord journal is
# printed too.
set -u

# Every scenario of a full run on SUITE, by the name its PASS line gives
# (provision.sh's checks first); `a|b`: one of the two passes. tests/vm/run
# checks a suite's lines against this list (tests/vm/check-results): each
# listed name passed once, none failed, no other name passed. A scenario
# added or taken away here, and in its script, in the same change.
scenario_names() { # scenario_names SUITE
  echo install ready loaded-custom.deny-write loaded-custom.nginx-allow loaded-custom.complain-trial \
    mode-complain status-text
  echo 1-readiness 2b-direct-load 2-update 3-in-use 4-denials forged-entry 5-layouts 6-restart \
    older-state 11-allow-list upgrade 21-doctor
  if [ "$1" = trixie ]; then echo 21-doctor-fix; fi
  echo 19-audit-backlog-raised "19-burst-1000|19-burst-accounted"
  echo 23-fleet-upload 23-fleet-forged-ignored
  echo 12-deny-write-runc 12-deny-write-podman 12-deny-write-ctr 13-container-denial \
    14-container-allow-list 16-container-attribution 15-replaced-while-running 17-container-deferred
  echo 20-trial-learned 20-trial-new-version 20-trial-promoted 20-trial-idle-held
  echo 22-lint-deny-in-complain 22-lint-runtime-signal
  echo node-exporter
  if [ "$1" = bookworm ]; then echo apparmor4-refused-by-apparmor3; else echo apparmor4-userns; fi
  echo 18-signed-policy 7-reboot 20-trial-after-reboot 8-hardening 10-dbus drift-repair 9-packaging
  if [ "$1" = bookworm ]; then echo rpm; fi
  echo all-scenarios-ran
}
# scenarios.sh --list SUITE: that list, one entry a line (on any machine).
if [ "${1:-}" = --list ]; then
  scenario_names "${2:?scenarios.sh --list SUITE}" | tr ' ' '\n'
  exit 0
fi

T=/opt/armord-test
STATE=/var/lib/armord-test
SUITE=$(cat "$T/suite" 2>/dev/null || echo bookworm)
mkdir -p "$STATE"
failed=0
pass() { echo "PASS $1"; }
fail() { echo "FAIL $1: $2"; failed=1; }
loaded() { grep -q "^$1 " /sys/kernel/security/apparmor/profiles; }
wait_for() { # wait_for SECONDS COMMAND...: poll until the command succeeds
  local end=$(( $(date +%s) + $1 )); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$end" ] && return 1
    sleep 0.2
  done
}
sha_of() { armorctl list --json | grep "\"name\":\"$1\"" | sed 's/.*"sha256":"\([0-9a-f]*\)".*/\1/'; }

deny_write_v2() {
  sed 's|^  /tmp/\*\* rwlk,|  /tmp/** rwlk,\n  /var/tmp/vm-extra/** r,|' /usr/share/doc/armord/examples/profiles/custom.deny-write
}

# shellcheck source=tests/vm/containers.sh
. "$T/containers.sh"
# shellcheck source=tests/vm/trial.sh
. "$T/trial.sh"
# shellcheck source=tests/vm/doctor.sh
. "$T/doctor.sh"
# shellcheck source=tests/vm/lint.sh
. "$T/lint.sh"
# shellcheck source=tests/vm/fleet.sh
. "$T/fleet.sh"

# Upgrade: the older package is installed; `apt install` this tree's. The
# kernel's profile count never dips while the service restarts, the
# conffile is untouched, armorctl status is clean, the manifest adopted.
upgrade() {
  local sum0 n0 owned0 min rc ver
  sum0=$(md5sum < /etc/armord/armord.toml)
  n0=$(wc -l < /sys/kernel/security/apparmor/profiles)
  owned0=$(grep -o '"custom[^"]*":{' /var/lib/armord/state.json | sort | tr -d '\n')
  rm -f "$STATE/upgrade-done"
  ( min=999999; while [ ! -e "$STATE/upgrade-done" ]; do
      n=$(wc -l < /sys/kernel/security/apparmor/profiles); [ "$n" -lt "$min" ] && min=$n
    done; echo "$min" > "$STATE/upgrade-min" ) &
  local sampler=$!
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$T/armord.deb" > "$STATE/upgrade.log" 2>&1
  rc=$?
  armorctl wait --timeout 60s >/dev/null 2>&1
  touch "$STATE/upgrade-done"; wait "$sampler"; min=$(cat "$STATE/upgrade-min")
  ver=$(dpkg-query -W -f '${Version}' armord)
  if [ "$rc" = 0 ] && [ "$ver" != "0.0.1~vmold" ] && [ "$min" -ge "$n0" ] \
      && [ "$(md5sum < /etc/armord/armord.toml)" = "$sum0" ] && ! ls /etc/armord/armord.toml.dpkg-* >/dev/null 2>&1 \
      && armorctl status >/dev/null \
      && [ "$(grep -o '"custom[^"]*":{' /var/lib/armord/state.json | sort | tr -d '\n')" = "$owned0" ]; then
    pass upgrade
  else
    fail upgrade "rc $rc, version $ver, profiles $n0 -> min $min, status: $(armorctl status 2>&1 | tail -n 2 | tr '\n' ' ') $(tail -n 3 "$STATE/upgrade.log" | tr '\n' ' ')"
  fi
}

# node_exporter's textfile collector reads armord's export.
node_exporter() {
  local dir=/var/lib/prometheus/node-exporter
  mkdir -p "$dir" /etc/armord/armord.toml.d
  # The directory may belong to node_exporter's user: say armord may write there.
  printf '[exports]\nprometheus_textfile = "%s/armord.prom"\nshared_directory = true\n' "$dir" > /etc/armord/armord.toml.d/60-vm-exports.toml
  # The unit writes only its own directories (ProtectSystem=strict): an
  # export directory is granted with a drop-in, as the README says.
  mkdir -p /etc/systemd/system/armord.service.d
  printf '[Service]\nReadWritePaths=%s\n' "$dir" > /etc/systemd/system/armord.service.d/60-exports.conf
  systemctl daemon-reload
  systemctl restart armord
  systemctl restart prometheus-node-exporter >/dev/null 2>&1 || true
  # The counters are armord's since it started: a denial after the restart.
  armorctl wait --timeout 60s >/dev/null 2>&1
  aa-exec -p custom.deny-write -- sh -c 'echo x > /root/vm-node-exporter' 2>/dev/null
  # node_exporter orders the labels by name.
  if wait_for 60 bash -c "curl -sf http://127.0.0.1:9100/metrics | grep -q '^armord_profiles{state=\"loaded\"} [1-9]'" \
      && wait_for 30 bash -c "curl -sf http://127.0.0.1:9100/metrics | grep -q '^armord_denials_total{kind=\"DENIED\",profile=\"custom.deny-write\"} [1-9]'"; then
    pass node-exporter
  else
    fail node-exporter "metrics: $(curl -s http://127.0.0.1:9100/metrics 2>&1 | grep -c .) lines, $(curl -s http://127.0.0.1:9100/metrics | grep '^armord' | head -n 4 | tr '\n' ' '); unit $(systemctl is-active prometheus-node-exporter); $(journalctl -u prometheus-node-exporter --no-pager -n 3 | tr '\n' ' '); textfile: $(ls -l "$dir" | tr '\n' ' ')"
  fi
}

# AppArmor 4 rules: trixie loads them; bookworm's parser refuses them with
# the file and line (line 1: AppArmor 3 has no abi/4.0 to open), and
# nothing else changes.
apparmor4() {
  cat > /etc/armord/profiles.d/custom.aa4 <<'EOF'
abi <abi/4.0>,
include <tunables/global>
profile custom.aa4 flags=(attach_disconnected) {
  include <abstractions/base>
  userns,
  file,
}
EOF
  if [ "$SUITE" = bookworm ]; then
    if wait_for 30 bash -c "armorctl status | grep -qF 'error: /etc/armord/profiles.d/custom.aa4:1: '" && ! loaded custom.aa4 \
        && loaded custom.deny-write; then
      pass apparmor4-refused-by-apparmor3
    else
      fail apparmor4-refused-by-apparmor3 "$(armorctl status 2>&1 | tail -n 2)"
    fi
  else
    if wait_for 30 loaded custom.aa4 \
        && aa-exec -p custom.aa4 -- unshare --user true; then
      pass apparmor4-userns
    else
      fail apparmor4-userns "$(armorctl status 2>&1 | tail -n 2)"
    fi
  fi
  rm -f /etc/armord/profiles.d/custom.aa4
}

# Signed policy: a revision signed with stock OpenSSH's key loads; a file
# changed after signing is refused and the signed version stays loaded.
signed() {
  local d=/srv/signed
  mkdir -p "$d" /etc/armord/armord.toml.d
  printf 'profile custom.signed {\n  /etc/hostname r,\n}\n' > "$d/custom.signed"
  armorctl sign "$d" --key "$T/signing-key" >/dev/null
  # Sources add up across drop-ins: 50-vm.toml already lists profiles.d.
  printf 'trusted_keys = ["%s"]\n[[source]]\npath = "%s"\nsignatures = "required"\n' \
    "$T/signing-key.pub" "$d" > /etc/armord/armord.toml.d/70-vm-signed.toml
  systemctl reload armord
  if wait_for 30 loaded custom.signed && armorctl verify "$d" | grep -q '^ok: 1 files signed'; then
    local good; good=$(sha_of custom.signed)
    printf 'profile custom.signed {\n  /** rwx,\n}\n' > "$d/custom.signed"
    if wait_for 30 bash -c "armorctl status | grep -q 'hash mismatch'" && loaded custom.signed \
        && [ -n "$good" ] && [ "$(sha_of custom.signed)" = "$good" ]; then
      pass 18-signed-policy
    else
      fail 18-signed-policy "tampered revision: $(armorctl status 2>&1 | tail -n 2 | tr '\n' ' ')"
    fi
  else
    fail 18-signed-policy "signed revision not loaded: $(armorctl status 2>&1 | tail -n 2 | tr '\n' ' ')"
  fi
  rm -f /etc/armord/armord.toml.d/70-vm-signed.toml
  systemctl reload armord
}

# The .rpm under systemd, on a system without the .deb: the preset enables
# the unit, it starts and loads a profile, `rpm -e` stops it and leaves the
# profile loaded.
rpm_package() {
  mkdir -p /etc/armord/profiles.d
  printf 'profile custom.rpmtest {\n  /etc/hostname r,\n}\n' > /etc/armord/profiles.d/custom.rpmtest
  if ! rpm -i --nodeps "$T/armord.rpm" > "$STATE/rpm.log" 2>&1; then
    fail rpm "rpm -i: $(tail -n 3 "$STATE/rpm.log" | tr '\n' ' ')"; return
  fi
  local enabled; enabled=$(systemctl is-enabled armord 2>&1)
  systemctl start armord
  if [ "$enabled" = enabled ] && systemctl is-active -q armord && wait_for 30 loaded custom.rpmtest; then
    rpm -e armord > "$STATE/rpm-e.log" 2>&1
    if ! systemctl is-active -q armord && loaded custom.rpmtest && [ ! -e /usr/bin/armord ]; then
      pass rpm
    else
      fail rpm "after rpm -e: $(systemctl is-active armord), $(grep -c '^custom.rpmtest ' /sys/kernel/security/apparmor/profiles) loaded"
    fi
  else
    fail rpm "preset: $enabled, active: $(systemctl is-active armord), $(journalctl -u armord --no-pager -n 3 | tr '\n' ' ')"
  fi
}

# A burst of 1,000 distinct denials within a second: every one reaches
# armorctl denials --summary (the audit transport, not the console copy).
# Where journald does not read the audit transport, every one is shown or
# reported lost during this burst (armord's lost counter is since its
# start: the difference across the burst), and armord said why in this boot.
lost_so_far() { # the audit records armord has reported lost since it started
  local n
  n=$(armorctl status 2>&1 | sed -n 's/^denials: \([0-9]*\) audit records lost.*/\1/p')
  echo "${n:-0}"
}
# Where journald was started without its audit socket (trixie ships it
# disabled, and systemd refuses to start it under a running journald),
# apply the fix armord's warning and the README give.
audit_socket() {
  if ! systemctl is-active -q systemd-journald-audit.socket; then
    systemctl enable -q systemd-journald-audit.socket
    systemctl stop systemd-journald
    systemctl start systemd-journald-audit.socket systemd-journald
    systemctl restart armord
    armorctl wait --timeout 60s >/dev/null 2>&1
  fi
}
burst() {
  audit_socket
  burst_round=$(( ${burst_round:-0} + 1 ))
  local tag="vm-burst$burst_round-" lost0 t0
  lost0=$(lost_so_far)
  t0=$(date +%s)
  aa-exec -p custom.deny-write -- sh -c "i=0; while [ \$i -lt 1000 ]; do i=\$((i+1)); echo x > /root/$tag\$i; done" 2>/dev/null
  local n=0 end=$(( $(date +%s) + 120 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    n=$(armorctl denials --profile custom.deny-write --summary --json | grep -c "/root/$tag")
    [ "$n" -ge 1000 ] && break
    sleep 2
  done
  # armord raised the kernel's audit queue (64 records without auditd) at
  # its start in this boot, so the burst waits in it instead of being dropped.
  if journalctl -b -u armord --no-pager -o cat | grep -q "raised the kernel's audit backlog limit from [0-9]* to 8192"; then
    pass 19-audit-backlog-raised
  elif [ "$burst_round" = 1 ]; then
    fail 19-audit-backlog-raised "$(journalctl -b -u armord --no-pager -o cat | grep 'audit backlog' | tail -n 2 | tr '\n' ' ')"
  fi
  local lost
  lost=$(( $(lost_so_far) - lost0 ))
  if [ "$n" -ge 1000 ]; then
    pass 19-burst-1000
  elif [ "$(( n + lost ))" -ge 1000 ] \
      && journalctl -b -u armord --since "@$t0" --no-pager | grep -q 'journald does not read the audit transport'; then
    # journald could not read the audit transport here: every record of
    # this burst is still accounted for, shown or reported lost in it, and
    # armord said why while it ran.
    pass "19-burst-accounted ($n shown, $lost reported lost: journald does not read the audit transport)"
  else
    local audit kernel
    audit=$(journalctl _TRANSPORT=audit --no-pager -o cat | grep -c "$tag")
    kernel=$(journalctl _TRANSPORT=kernel --no-pager -o cat | grep -c "$tag")
    fail 19-burst-1000 "$n of 1000 in armorctl denials --summary; $lost reported lost in the burst; journal: $audit audit, $kernel kernel; $(journalctl -k --no-pager -o cat | grep -E 'audit_lost|audit_backlog' | tail -n 4 | tr '\n' ' ')"
  fi
  systemctl status systemd-journald-audit.socket --no-pager 2>&1 | head -n 6 | sed 's/^/  audit socket: /'
  # Iterating (ARMORD_VM_ONLY): where records go, each round.
  if grep -q '[a-z]' "$T/only" 2>/dev/null; then
    echo "INFO burst-diag round $burst_round: $n shown;" \
      "journal: $(journalctl _TRANSPORT=audit --no-pager -o cat | grep -c "$tag") audit," \
      "$(journalctl _TRANSPORT=kernel --no-pager -o cat | grep -c "$tag") kernel"
    echo "INFO burst-diag netlink audit sockets (sk eth pid groups rmem wmem dump locks drops inode):"
    awk '$2 == 9' /proc/net/netlink | sed 's/^/INFO burst-diag /'
    echo "INFO burst-diag rmem_max $(cat /proc/sys/net/core/rmem_max); journald: $(journalctl -u systemd-journald --no-pager -o cat | tail -n 5 | tr '\n' ' ')"
    journalctl --no-pager -o cat -b | grep -iE 'suppressed [0-9]+ messages|recvmsg|No buffer space|overrun' | tail -n 5 | sed 's/^/INFO burst-diag /'
    journalctl -k --no-pager -o cat -b | grep -E 'audit_lost|audit_backlog|lost' | tail -n 5 | sed 's/^/INFO burst-diag kernel: /'
    journalctl -u armord --no-pager -o cat -b | grep -E 'audit backlog' | tail -n 3 | sed 's/^/INFO burst-diag armord: /'
  fi
}

boot1() {
  bash "$T/provision.sh" "$T/armord-old.deb"
  # 1. Readiness: start returns after READY, the unit is active, StatusText
  # has the counts, every profile is loaded with its mode.
  systemctl stop armord
  if systemctl start armord && systemctl is-active -q armord \
      && systemctl show -p StatusText --value armord | grep -q 'loaded, 0 invalid' \
      && grep -q '^custom.deny-write (enforce)' /sys/kernel/security/apparmor/profiles \
      && grep -q '^custom.complain-trial (complain)' /sys/kernel/security/apparmor/profiles; then
    pass 1-readiness
  else
    fail 1-readiness "$(systemctl show -p StatusText --value armord)"
  fi

  # 2. Update: a change is replaced within seconds; a broken change keeps the
  # old version loaded, and the error shows in armorctl status and the journal.
  local f=/etc/armord/profiles.d/custom.deny-write before
  before=$(sha_of custom.deny-write)
  deny_write_v2 > "$f.tmp" && mv "$f.tmp" "$f"
  if wait_for 10 bash -c "[ \"\$(armorctl list --json | grep -c custom.deny-write)\" = 1 ] && ! armorctl list --json | grep -q '$before'"; then
    good=$(sha_of custom.deny-write)
    # 2b. Direct load: that change reached the kernel as armord's own write
    # of the policy its check compiled (the kernel's audit record of the
    # replace names armord's pid), not through a second apparmor_parser run.
    local mainpid
    mainpid=$(systemctl show -p MainPID --value armord)
    if wait_for 10 bash -c "journalctl --no-pager -o cat | grep 'operation=\"profile_replace\"' | grep 'name=\"custom.deny-write\"' | grep -q ' pid=$mainpid '"; then
      pass 2b-direct-load
    else
      fail 2b-direct-load "armord pid $mainpid; replace records: $(journalctl --no-pager -o cat | grep 'profile_replace' | grep 'custom.deny-write' | tail -n 2 | tr '\n' ' ')"
    fi
    printf 'profile custom.deny-write {\n  /etc/** rz,\n}\n' > "$f"
    if wait_for 10 bash -c "armorctl status | grep -q 'custom.deny-write:2:'" \
        && loaded custom.deny-write && [ "$(sha_of custom.deny-write)" = "$good" ] \
        && journalctl -u armord --no-pager | grep -q "custom.deny-write:2:"; then
      pass 2-update
    else
      fail 2-update "broken change: $(armorctl status 2>&1 | tail -n 3)"
    fi
    cp /usr/share/doc/armord/examples/profiles/custom.deny-write "$f"
    wait_for 10 bash -c "armorctl status" || true
  else
    fail 2-update "the change was not replaced within 10 s"
  fi

  # 3. In use: a confined process keeps its profile loaded after its file is
  # deleted (deferred); when it exits, the removal completes.
  aa-exec -p custom.nginx-allow -- sleep 600 &
  local pid=$!
  sleep 0.5
  rm -f /etc/armord/profiles.d/custom.nginx-allow
  if wait_for 10 bash -c "armorctl list --json | grep custom.nginx-allow | grep -q deferred" && loaded custom.nginx-allow; then
    kill "$pid"; wait "$pid" 2>/dev/null
    if wait_for 15 bash -c "! grep -q '^custom.nginx-allow ' /sys/kernel/security/apparmor/profiles"; then
      pass 3-in-use
    else
      fail 3-in-use "not removed after the process exited"
    fi
  else
    kill "$pid" 2>/dev/null
    fail 3-in-use "not deferred: $(armorctl list 2>&1 | grep nginx)"
  fi
  cp /usr/share/doc/armord/examples/profiles/custom.nginx-allow /etc/armord/profiles.d/
  wait_for 10 loaded custom.nginx-allow || true

  # 4. Denials: a write the deny-write profile forbids shows in armorctl
  # denials and as a structured journal entry; suggest prints a rule that compiles.
  aa-exec -p custom.deny-write -- sh -c 'echo x > /root/vm-denied' 2>/dev/null
  if wait_for 20 bash -c "armorctl denials --profile custom.deny-write | grep -q '/root/vm-denied'" \
      && journalctl ARMORD_PROFILE=custom.deny-write --no-pager -o verbose | grep -q 'ARMORD_OPERATION=' \
      && armorctl suggest custom.deny-write > "$STATE/suggest" && grep -q '/root/vm-denied' "$STATE/suggest"; then
    pass 4-denials
  else
    fail 4-denials "$(armorctl denials --profile custom.deny-write 2>&1 | tail -n 3)"
  fi

  # forged-entry: an entry any user can write with armord's MESSAGE_ID, a
  # real ARMORD_RECORD shape and a new path never counts as a denial.
  rec=$(journalctl ARMORD_PROFILE=custom.deny-write -o json --no-pager | grep -m1 -o '"ARMORD_RECORD":"[^}]*}"' | sed 's/^"ARMORD_RECORD":"//; s/"$//; s/\\"/"/g')
  forged=$(printf '%s' "$rec" | sed 's#/root/vm-denied#/etc/forged-by-nobody#')
  printf 'MESSAGE_ID=3c1f6a0e8b2d4c57a9e4d21b7f5c8e90\nARMORD_PROFILE=custom.deny-write\nARMORD_RECORD=%s\nMESSAGE=forged\n' "$forged" \
    | runuser -u nobody -- logger --journald 2>/dev/null || true
  sleep 1
  seen=$( { armorctl denials --profile custom.deny-write; armorctl denials --summary; armorctl suggest custom.deny-write; } 2>&1)
  if [ -n "$rec" ] && journalctl MESSAGE_ID=3c1f6a0e8b2d4c57a9e4d21b7f5c8e90 _UID=65534 --no-pager -o cat | grep -q forged \
      && ! grep -q forged-by-nobody <<<"$seen" && grep -q "imitating armord's, ignored" <<<"$seen"; then
    pass forged-entry
  else
    fail forged-entry "record ${#rec} bytes; $(grep -m3 -e forged -e imitating <<<"$seen")"
  fi

  # 5. Layouts: a ConfigMap swap and a git-sync swap, made with symlink renames.
  mkdir -p /srv/cm/..v1 /srv/gs/.worktrees/h1
  printf 'profile custom.cm1 {\n  /etc/hostname r,\n}\n' > /srv/cm/..v1/cm1
  ln -s ..v1 /srv/cm/..data && ln -s ..data/cm1 /srv/cm/cm1
  printf 'profile custom.gs1 {\n  /etc/hostname r,\n}\n' > /srv/gs/.worktrees/h1/gs1
  ln -s .worktrees/h1 /srv/gs/current
  printf '[[source]]\npath = "/etc/armord/profiles.d"\n[[source]]\npath = "/srv/cm"\n[[source]]\npath = "/srv/gs"\n' > /etc/armord/armord.toml.d/50-vm.toml 2>/dev/null \
    || { mkdir -p /etc/armord/armord.toml.d; printf '[[source]]\npath = "/etc/armord/profiles.d"\n[[source]]\npath = "/srv/cm"\n[[source]]\npath = "/srv/gs"\n' > /etc/armord/armord.toml.d/50-vm.toml; }
  systemctl reload armord
  if wait_for 15 loaded custom.cm1 && wait_for 15 loaded custom.gs1; then
    mkdir -p /srv/cm/..v2 /srv/gs/.worktrees/h2
    printf 'profile custom.cm2 {\n  /etc/hostname r,\n}\n' > /srv/cm/..v2/cm2
    ln -s ..v2 /srv/cm/..data_tmp && mv -T /srv/cm/..data_tmp /srv/cm/..data
    ln -s ..data/cm2 /srv/cm/cm2 && rm -f /srv/cm/cm1 && rm -rf /srv/cm/..v1
    printf 'profile custom.gs2 {\n  /etc/hostname r,\n}\n' > /srv/gs/.worktrees/h2/gs2
    ln -s .worktrees/h2 /srv/gs/tmp-link && mv -T /srv/gs/tmp-link /srv/gs/current && rm -rf /srv/gs/.worktrees/h1
    # Each swap removes the only profile of its source: a mass removal,
    # held (and shown) until the operator lets it through.
    if wait_for 15 loaded custom.cm2 && wait_for 15 loaded custom.gs2 \
        && wait_for 15 bash -c "armorctl status | grep -q '^held: custom.cm1'" && loaded custom.cm1 \
        && { armorctl sync --allow-mass-removal >/dev/null || true; } \
        && wait_for 15 bash -c "! grep -q '^custom.cm1 ' /sys/kernel/security/apparmor/profiles" \
        && ! loaded custom.gs1; then
      pass 5-layouts
    else
      fail 5-layouts "swaps not picked up: $(armorctl status 2>&1 | tail -n 4)"
    fi
  else
    fail 5-layouts "sources not loaded: $(armorctl status 2>&1 | tail -n 3)"
  fi

  # 6. Restart: the kernel's profile count never drops, and no denial is
  # repeated or lost.
  local n0 min
  n0=$(wc -l < /sys/kernel/security/apparmor/profiles)
  aa-exec -p custom.deny-write -- sh -c 'echo x > /root/vm-before-restart' 2>/dev/null
  ( end=$(( $(date +%s) + 8 )); min=999999
    while [ "$(date +%s)" -lt "$end" ]; do
      n=$(wc -l < /sys/kernel/security/apparmor/profiles); [ "$n" -lt "$min" ] && min=$n
    done; echo "$min" > "$STATE/min" ) &
  local sampler=$!
  sleep 1
  systemctl restart armord
  aa-exec -p custom.deny-write -- sh -c 'echo x > /root/vm-after-restart' 2>/dev/null
  wait "$sampler"
  min=$(cat "$STATE/min")
  wait_for 20 bash -c "armorctl denials --profile custom.deny-write | grep -q vm-after-restart" || true
  local total unique
  total=$(armorctl denials --profile custom.deny-write --json | grep -c '"audit_id"')
  unique=$(armorctl denials --profile custom.deny-write --json | grep -o '"audit_id":"[^"]*"' | sort -u | wc -l)
  if [ "$min" -ge "$n0" ] && [ "$total" = "$unique" ] \
      && armorctl denials --profile custom.deny-write | grep -q vm-before-restart \
      && armorctl denials --profile custom.deny-write | grep -q vm-after-restart; then
    pass 6-restart
  else
    fail 6-restart "profiles $n0 -> min $min during restart; denials $total, unique $unique"
  fi

  # older-state: armord started on its state as the first release wrote it
  # (no generation, no pending log, no spare, no unchecked or serials in the
  # manifest) adopts it on the real kernel: no dip, an edit replaces, a
  # deleted file's profile is removed, the rest still owned, no denial
  # re-logged.
  printf 'profile custom.vm-old-edit {\n  /etc/hostname r,\n}\n' > /etc/armord/profiles.d/custom.vm-old-edit
  printf 'profile custom.vm-old-gone {\n  /etc/hostname r,\n}\n' > /etc/armord/profiles.d/custom.vm-old-gone
  if wait_for 20 loaded custom.vm-old-edit && wait_for 20 loaded custom.vm-old-gone; then
    local owned_before edit0 dups0
    relogged_twice() { journalctl MESSAGE_ID=3c1f6a0e8b2d4c57a9e4d21b7f5c8e90 -o json --no-pager | grep -o '"ARMORD_AUDIT_KEY":"[^"]*"' | sort | uniq -d | wc -l; }
    dups0=$(relogged_twice)
    owned_before=$(armorctl list | awk -F'\t' '$3 ~ /^loaded/ { print $1 }' | grep -vx custom.vm-old-gone | sort)
    edit0=$(sha_of custom.vm-old-edit)
    systemctl stop armord
    python3 - <<'PY'
import json
p = "/var/lib/armord/state.json"
m = json.load(open(p))
for k in ("generation", "unchecked", "serials", "pending", "removing"):
    m.pop(k, None)
json.dump(m, open(p, "w"), indent=2)
PY
    rm -rf /var/lib/armord/spare /var/lib/armord/pending.log
    printf 'profile custom.vm-old-edit {\n  /etc/hostname r,\n  /etc/motd r,\n}\n' > /etc/armord/profiles.d/custom.vm-old-edit
    rm -f /etc/armord/profiles.d/custom.vm-old-gone
    ( end=$(( $(date +%s) + 8 )); min=999999
      while [ "$(date +%s)" -lt "$end" ]; do
        n=$(grep -c -v '^custom.vm-old-gone ' /sys/kernel/security/apparmor/profiles); [ "$n" -lt "$min" ] && min=$n
      done; echo "$min" > "$STATE/min-old" ) &
    local sampler2=$! n_old
    n_old=$(grep -c -v '^custom.vm-old-gone ' /sys/kernel/security/apparmor/profiles)
    systemctl start armord
    wait "$sampler2"
    local owned_after dups
    gone_removed() { ! grep -q "^custom.vm-old-gone " /sys/kernel/security/apparmor/profiles; }
    edit_replaced() { local now; now=$(sha_of custom.vm-old-edit); [ -n "$now" ] && [ "$now" != "$edit0" ]; }
    wait_for 60 gone_removed
    wait_for 20 edit_replaced
    owned_after=$(armorctl list | awk -F'\t' '$3 ~ /^loaded/ { print $1 }' | sort)
    dups=$(relogged_twice)
    if gone_removed && edit_replaced && [ "$owned_after" = "$owned_before" ] \
        && [ "$(cat "$STATE/min-old")" -ge "$n_old" ] && [ "$dups" = "$dups0" ]; then
      pass older-state
    else
      fail older-state "min $(cat "$STATE/min-old") of $n_old; owned $(wc -l <<<"$owned_before") -> $(wc -l <<<"$owned_after"); gone removed: $(gone_removed && echo yes || echo no); edit replaced: $(edit_replaced && echo yes || echo no); $((dups - dups0)) denials re-logged; $(journalctl -u armord --no-pager -n 4 | tr '\n' ' ')"
    fi
    # Gone before the next scenario, which counts the kernel's profiles.
    rm -f /etc/armord/profiles.d/custom.vm-old-edit
    wait_for 60 bash -c '! grep -q "^custom.vm-old-edit " /sys/kernel/security/apparmor/profiles' || true
  else
    fail older-state "the two profiles did not load"
  fi

  # 11. Allow-list: a profile rendered from a spec runs its listed program,
  # refuses an unlisted one (/bin/sh), and the exec denial shows in armorctl.
  printf 'name = "custom.vmallow"\nexec = ["/usr/bin/env", "/usr/bin/true"]\n' > /etc/armord/profiles.d/custom.vmallow.allow.toml
  if wait_for 15 loaded custom.vmallow \
      && aa-exec -p custom.vmallow -- /usr/bin/env /usr/bin/true \
      && ! aa-exec -p custom.vmallow -- /usr/bin/env /bin/sh -c true 2>/dev/null \
      && wait_for 20 bash -c "armorctl denials --profile custom.vmallow | grep -q ' exec .*dash'" \
      && armorctl suggest --spec custom.vmallow | grep -q 'exec = \[\"/usr/bin/dash\"\]'; then
    pass 11-allow-list
  else
    fail 11-allow-list "$(armorctl denials --profile custom.vmallow 2>&1 | tail -n 2)"
  fi

  upgrade
  doctor_vm
  burst
  fleet_vm
  containers
  trial_boot1
  lint_vm
  node_exporter
  apparmor4
  signed

  # Prepare 7: a stand-in kubelet ordered after armord records what it sees,
  # and the sync directory is gone before the reboot (missing is not empty).
  cat > /etc/systemd/system/kubelet.service <<'UNIT'
[Unit]
Description=kubelet stand-in
[Service]
Type=oneshot
ExecStart=/bin/sh -c 'cp /sys/kernel/security/apparmor/profiles /var/lib/armord-test/kubelet-saw'
[Install]
WantedBy=multi-user.target
UNIT
  mkdir -p /etc/systemd/system/kubelet.service.d
  cp /usr/share/doc/armord/examples/kubelet.service.d/10-armord.conf /etc/systemd/system/kubelet.service.d/
  systemctl daemon-reload && systemctl enable -q kubelet.service
  rm -f /etc/armord/armord.toml.d/50-vm.toml /etc/armord/armord.toml.d/60-vm-exports.toml
  mv /etc/armord/profiles.d "$STATE/profiles.d.away"
  sleep 1
  touch "$STATE/boot1-done"
}

boot2() {
  # 7. Reboot: the profiles were loaded from the store before kubelet started,
  # though the sync directory is missing.
  if grep -q '^custom.deny-write ' "$STATE/kubelet-saw" 2>/dev/null \
      && grep -q '^custom.complain-trial ' "$STATE/kubelet-saw" \
      && loaded custom.deny-write; then
    pass 7-reboot
  else
    fail 7-reboot "kubelet saw: $(cat "$STATE/kubelet-saw" 2>/dev/null | tr '\n' ' ')"
  fi
  trial_boot2

  # 8. Hardening: the exposure stays under the bar recorded for issue 6.
  local exposure
  exposure=$(systemd-analyze security armord.service 2>/dev/null | sed -n 's/.*Overall exposure level for armord.service: \([0-9.]*\).*/\1/p')
  echo "exposure: ${exposure:-?}"
  if [ -n "$exposure" ] && awk -v e="$exposure" 'BEGIN { exit !(e < 2.0) }'; then
    pass 8-hardening
  else
    fail 8-hardening "exposure ${exposure:-unknown}"
  fi

  # 10. D-Bus: the interface is introspectable; a non-root user is refused Sync.
  if busctl introspect org.armord.Armord1 /org/armord/Armord1 2>/dev/null | grep -q '^org.armord.Armord1 ' \
      && setpriv --reuid=65534 --regid=65534 --clear-groups armorctl sync 2>&1 | grep -q 'permission denied'; then
    pass 10-dbus
  else
    fail 10-dbus "$(setpriv --reuid=65534 --regid=65534 --clear-groups armorctl sync 2>&1 | tail -n 1)"
  fi

  # drift-repair: an owned profile removed behind armord's back (through
  # .remove, as apparmor_parser -R does), then every profile (aa-teardown),
  # is put back at once, not at the next resync; the time is printed.
  local owned one ms_one ms_all
  owned=$(armorctl list 2>/dev/null | awk -F'\t' '$3 ~ /^loaded/ { print $1 }' | sort)
  one=$(head -n 1 <<<"$owned")
  back_within() {  # ms until every name on stdin is loaded again (20 s at most)
    local names start now
    names=$(cat)
    start=$(date +%s%N)
    while :; do
      if ! grep -qvxFf <(sed -n 's/ (.*//p' /sys/kernel/security/apparmor/profiles) <<<"$names"; then
        now=$(date +%s%N)
        echo $(( (now - start) / 1000000 ))
        return 0
      fi
      [ $(( $(date +%s%N) - start )) -gt 20000000000 ] && return 1
      sleep 0.02
    done
  }
  if [ -n "$one" ]; then
    printf '%s' "$one" > /sys/kernel/security/apparmor/.remove
    ms_one=$(back_within <<<"$one") || ms_one=""
    aa-teardown >/dev/null 2>&1
    ms_all=$(back_within <<<"$owned") || ms_all=""
  fi
  echo "INFO drift-repair: one profile back in ${ms_one:-never} ms, all $(wc -l <<<"$owned") after aa-teardown in ${ms_all:-never} ms"
  if [ -n "$ms_one" ] && [ -n "$ms_all" ] && journalctl -u armord --no-pager | grep -q 'drift: .* removed behind armord'; then
    pass drift-repair
  else
    fail drift-repair "one: ${ms_one:-never}; all: ${ms_all:-never}; $(journalctl -u armord --no-pager -n 5 | tr '\n' ' ')"
  fi

  # 9. Packaging: purge leaves every loaded profile loaded and removes the state.
  local before
  before=$(grep -c '^custom\.' /sys/kernel/security/apparmor/profiles)
  dpkg --purge armord >/dev/null 2>&1
  if [ "$(grep -c '^custom\.' /sys/kernel/security/apparmor/profiles)" = "$before" ] && [ "$before" -gt 0 ] \
      && [ ! -e /var/lib/armord ]; then
    pass 9-packaging
  else
    fail 9-packaging "$before custom profiles before purge, $(grep -c '^custom\.' /sys/kernel/security/apparmor/profiles) after; /var/lib/armord $( [ -e /var/lib/armord ] && echo remains || echo gone)"
  fi
  # The .rpm with Debian's rpm, once the .deb is purged (bookworm).
  if [ "$SUITE" = bookworm ]; then rpm_package; fi
  pass all-scenarios-ran
}

# ARMORD_VM_ONLY (tests/vm/run): run only the named scenario functions
# after provisioning, at the first boot.
if grep -q '[a-z]' "$T/only" 2>/dev/null; then
  if [ ! -e "$STATE/boot1-done" ]; then
    bash "$T/provision.sh" "$T/armord.deb"
    for f in $(cat "$T/only"); do "$f"; done
    touch "$STATE/boot1-done"
  fi
  pass all-scenarios-ran
elif [ -e "$STATE/boot1-done" ]; then boot2; else boot1; fi
if [ "$failed" != 0 ]; then
  echo "== journalctl -u armord"
  journalctl -u armord --no-pager -n 150
fi
exit 0
