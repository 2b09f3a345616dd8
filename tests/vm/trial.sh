# From trial to enforce, with real container runtimes: sourced by
# scenarios.sh after containers.sh (it has pass, fail, wait_for, loaded and
# the runtimes' *_run helpers). trial_boot1 runs at the first boot, after
# the containers; trial_boot2 after the reboot.

kernel_mode() { sed -n "s/^$1 (\(.*\))\$/\1/p" /sys/kernel/security/apparmor/profiles; }
mode_is() { [ "$(kernel_mode "$1")" = "$2" ]; } # mode_is PROFILE MODE
sha_moved() { local s; s=$(sha_of "$1"); [ -n "$s" ] && [ "$s" != "$2" ]; } # sha_moved PROFILE OLD
processes_seen() { armorctl status 2>/dev/null | grep "$1" | grep -q ' [1-9][0-9]* processes seen'; }
learned_has() { armorctl learn "$1" 2>/dev/null | grep -q "$2"; } # learned_has PROFILE TEXT

# ALLOWED records of PROFILE since the epoch second SINCE, as
# "comm operation name requested" lines.
allowed_since() { # allowed_since PROFILE SINCE
  journalctl --since "@$2" -o cat --no-pager 2>/dev/null | grep 'apparmor="ALLOWED"' | grep "profile=\"$1\"" \
    | awk '{ c = o = n = m = "-"
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^comm=/) c = $i; if ($i ~ /^operation=/) o = $i
          if ($i ~ /^name=/) n = $i; if ($i ~ /^requested_mask=/) m = $i }
        print c, o, n, m }' | sort -u
}

trial_boot1() {
  mkdir -p "$CTR"
  systemctl start containerd >/dev/null 2>&1 || true
  # Every record reaches the journal (as after the burst scenarios).
  audit_socket
  # Test-sized gate: 20 s in trial, and a fleet spread of 10 s.
  mkdir -p /etc/armord/armord.toml.d
  printf '[trial]\nmin_trial = "20s"\nfleet_spread = "10s"\n' > /etc/armord/armord.toml.d/55-vm-trial.toml
  systemctl restart armord
  armorctl wait --timeout 60s >/dev/null 2>&1
  # A spec allows every path but the programs it lists: this workload
  # also runs /bin/busybox-other, which the spec does not list (a copy of
  # busybox: a name that starts with "busybox" runs the applet it is given).
  printf 'name = "custom.trialweb"\nmode = "trial"\nexec = ["/bin/busybox"]\n' > "$P/custom.trialweb.allow.toml"
  # Nothing ever runs under this one.
  printf 'name = "custom.trialidle"\nmode = "trial"\nexec = ["/bin/busybox"]\n' > "$P/custom.trialidle.allow.toml"
  # What a runtime does under a profile while it starts a container is
  # measured under one that allows nothing beyond the base abstraction.
  cat > "$P/custom.trialbare" <<'EOF'
# armord: trial
abi <abi/3.0>,
include <tunables/global>
profile custom.trialbare flags=(attach_disconnected) {
  include <abstractions/base>
  signal (receive) peer=unconfined,
  signal (receive) peer=runc,
  signal (receive) peer=crun,
}
EOF
  if ! wait_for 30 mode_is custom.trialweb complain || ! wait_for 30 loaded custom.trialidle \
      || ! wait_for 30 mode_is custom.trialbare complain; then
    fail 20-trial-learned "not loaded in complain mode: $(grep trial /sys/kernel/security/apparmor/profiles | tr '\n' ' ')"
    return
  fi

  # Each runtime starts a container whose workload reads one file (a
  # record of its own, so the capture is seen to work): every record, by
  # command name (the runtimes' are not learned).
  local rt since runtime_rules=""
  for rt in runc podman ctr; do
    since=$(date +%s)
    "${rt}_run" custom.trialbare 'cat /etc/hostname' >/dev/null 2>&1
    sleep 2
    while read -r line; do
      [ -n "$line" ] && echo "INFO trial-runtime-startup $rt: $line"
    done < <(allowed_since custom.trialbare "$since")
  done
  if armorctl learn custom.trialbare --json >"$STATE/learn-runtimes.json" 2>/dev/null; then
    runtime_rules=$(grep -o '"rule":"[^"]*"' "$STATE/learn-runtimes.json" | tr '\n' ' ')
  fi
  echo "INFO trial-runtime-startup learned (the workloads' own): ${runtime_rules:-nothing}"
  rm -f "$P/custom.trialbare"

  # The workload: runs /bin/busybox-other twice a second, for good, and
  # counts.
  ctr_rootfs "$CTR/trial-rootfs"
  cp "$(command -v busybox)" "$CTR/trial-rootfs/bin/busybox-other"
  rm -f "$CTR/trial-rootfs/data/out"
  ctr run -d --rootfs --apparmor-profile custom.trialweb "$CTR/trial-rootfs" vm-trial \
    /bin/sh -c 'while :; do /bin/busybox-other true && echo x >> /data/out; sleep 0.5; done' >/dev/null 2>&1
  local learned
  if wait_for 30 test -s "$CTR/trial-rootfs/data/out" \
      && wait_for 30 learned_has custom.trialweb /bin/busybox-other \
      && wait_for 30 processes_seen custom.trialweb; then
    learned=$(armorctl learn custom.trialweb)
    echo "INFO trial-learn: $(tr '\n' '|' <<<"$learned")"
    armorctl status 2>&1 | grep 'trial' | sed 's/^/INFO trial-status-held: /'
    pass 20-trial-learned
  else
    fail 20-trial-learned "out: $(wc -c < "$CTR/trial-rootfs/data/out" 2>&1); learn: $(armorctl learn custom.trialweb 2>&1 | tr '\n' ' ')"
  fi

  # The learned version, written to the sync directory with the diff
  # `armorctl learn --diff` prints (busybox patch stands in for git apply),
  # is a new version: a new trial, with nothing learned.
  local v1 v2
  v1=$(sha_of custom.trialweb)
  armorctl learn --diff custom.trialweb > "$STATE/trial.diff"
  if (cd "$P" && busybox patch -p1 < "$STATE/trial.diff" >/dev/null) \
      && wait_for 30 sha_moved custom.trialweb "$v1" \
      && [ "$(kernel_mode custom.trialweb)" = complain ] \
      && { armorctl learn custom.trialweb >/dev/null 2>&1; [ $? = 1 ]; }; then
    v2=$(sha_of custom.trialweb)
    echo "INFO trial-new-version: $(tr '\n' '|' < "$P/custom.trialweb.allow.toml")"
    pass 20-trial-new-version
  else
    fail 20-trial-new-version "v1 $v1, now $(sha_of custom.trialweb) $(kernel_mode custom.trialweb); diff: $(tr '\n' ' ' < "$STATE/trial.diff"); learned: $(armorctl learn custom.trialweb --json 2>&1 | cut -c1-400)"
  fi

  # Promoted once 20 s and this node's spread offset have passed, while
  # the container runs on, and no denial follows.
  if wait_for 90 mode_is custom.trialweb enforce; then
    local at size
    at=$(date +%s)
    armorctl list 2>&1 | grep -A1 '^custom.trial' | sed 's/^/INFO trial-list: /'
    journalctl -u armord --no-pager -o cat | grep 'passed the gate' | sed 's/^/INFO trial-log: /'
    size=$(wc -c < "$CTR/trial-rootfs/data/out")
    sleep 3
    if [ "$(wc -c < "$CTR/trial-rootfs/data/out")" -gt "$size" ] \
        && [ "$(ctr task ls 2>/dev/null | awk '$1 == "vm-trial" { print $3 }')" = RUNNING ] \
        && ! journalctl --since "@$at" -o cat --no-pager | grep 'apparmor="DENIED"' | grep -q 'profile="custom.trialweb"' \
        && [ "$(sha_of custom.trialweb)" = "$v2" ]; then
      pass 20-trial-promoted
    else
      fail 20-trial-promoted "the container stopped or was denied: $(journalctl --since "@$at" -o cat --no-pager | grep 'custom.trialweb' | tail -n 2 | tr '\n' ' ')"
    fi
  else
    fail 20-trial-promoted "not promoted: $(armorctl status 2>&1 | grep trial | tr '\n' ' ')"
  fi

  # The profile nothing ran under is held, whatever the time.
  if [ "$(kernel_mode custom.trialidle)" = complain ] \
      && armorctl status 2>&1 | grep 'custom.trialidle' | grep -q 'no process has run under it'; then
    pass 20-trial-idle-held
  else
    fail 20-trial-idle-held "$(kernel_mode custom.trialidle); $(armorctl status 2>&1 | grep trialidle)"
  fi
  ctr task kill -s SIGKILL vm-trial >/dev/null 2>&1
  wait_for 30 ctr task delete vm-trial; ctr container delete vm-trial >/dev/null 2>&1
}

trial_boot2() {
  # Still enforced after the reboot (restored from the store with the sync
  # directory gone); the learned program runs, another one is denied.
  local out
  systemctl start containerd >/dev/null 2>&1 || true
  ctr_rootfs "$CTR/ctr-rootfs"
  cp "$(command -v busybox)" "$CTR/ctr-rootfs/bin/busybox-other"
  cp "$(command -v busybox)" "$CTR/ctr-rootfs/bin/busybox-third"
  out=$(ctr_run custom.trialweb '/bin/busybox-other true && echo LEARNED-OK; if /bin/busybox-third true 2>/dev/null; then echo OUTSIDE-ALLOWED; else echo OUTSIDE-REFUSED; fi')
  if [ "$(kernel_mode custom.trialweb)" = enforce ] && [ "$(kernel_mode custom.trialidle)" = complain ] \
      && grep -q LEARNED-OK <<<"$out" && grep -q OUTSIDE-REFUSED <<<"$out" \
      && wait_for 30 bash -c "armorctl denials --profile custom.trialweb | grep -q '/bin/busybox-third'"; then
    pass 20-trial-after-reboot
  else
    fail 20-trial-after-reboot "web $(kernel_mode custom.trialweb), idle $(kernel_mode custom.trialidle): $(tr '\n' ' ' <<<"$out" | tail -c 300)"
  fi
}
