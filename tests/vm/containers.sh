# Containers, the reason profiles exist: sourced by scenarios.sh (it has
# pass, fail, wait_for, loaded). Each runtime of the guest (runc, podman,
# containerd's ctr) runs a busybox-static root file system in a profile that
# armord loaded from its sync directory; no image registry is needed.
CTR=/var/lib/armord-test/ctr
P=/etc/armord/profiles.d

ctr_rootfs() { # ctr_rootfs DIR: a busybox root file system
  local d=$1 a
  mkdir -p "$d/bin" "$d/tmp" "$d/proc" "$d/sys" "$d/dev" "$d/etc" "$d/data"
  cp "$(command -v busybox)" "$d/bin/busybox"
  for a in sh cat echo touch sleep ls true rm; do ln -sf busybox "$d/bin/$a"; done
  # A program the allow-list does not list.
  cp "$d/bin/busybox" "$d/bin/other"
  chmod 1777 "$d/tmp"
}

runc_run() { # runc_run PROFILE SCRIPT: run SCRIPT in sh -c under PROFILE with runc
  local b="$CTR/runc-bundle"
  rm -rf "$b"; mkdir -p "$b"
  ctr_rootfs "$b/rootfs"
  ( cd "$b" && runc spec )
  sed -i -e 's/"terminal": true/"terminal": false/' -e 's/"readonly": true/"readonly": false/' \
    -e "s|^\(\s*\)\"sh\"$|\1\"sh\", \"-c\", \"$2\"|" \
    -e "s|\"cwd\": \"/\",|\"cwd\": \"/\", \"apparmorProfile\": \"$1\",|" "$b/config.json"
  grep -q '"apparmorProfile"' "$b/config.json" || echo "runc_run: no apparmorProfile in config.json"
  ( cd "$b" && timeout 120 runc run "vm-runc-$RANDOM" ) 2>&1
}

podman_run() { # podman_run PROFILE SCRIPT
  ctr_rootfs "$CTR/podman-rootfs"
  timeout 300 podman run --rm --network none --security-opt "apparmor=$1" \
    --rootfs "$CTR/podman-rootfs" /bin/sh -c "$2" 2>&1
}

ctr_run() { # ctr_run PROFILE SCRIPT
  ctr_rootfs "$CTR/ctr-rootfs"
  timeout 120 ctr run --rm --rootfs --apparmor-profile "$1" "$CTR/ctr-rootfs" "vm-ctr-$RANDOM" /bin/sh -c "$2" 2>&1
}

containers() {
  mkdir -p "$CTR"
  systemctl start containerd >/dev/null 2>&1 || true
  # The Kubernetes tutorial's profile, shipped through the sync directory.
  cat > "$P/k8s-apparmor-example-deny-write" <<'EOF'
#include <tunables/global>

profile k8s-apparmor-example-deny-write flags=(attach_disconnected) {
  #include <abstractions/base>

  file,

  # Deny all file writes.
  deny /** w,
}
EOF
  # Denies writes by omission (an explicit deny rule is silent by design).
  cat > "$P/custom.ctr-omit" <<'EOF'
#include <tunables/global>
profile custom.ctr-omit flags=(attach_disconnected) {
  #include <abstractions/base>
  /** rmix,
}
EOF
  printf 'name = "custom.ctrallow"\nexec = ["/bin/busybox"]\nwrite = ["/tmp/**"]\n' > "$P/custom.ctrallow.allow.toml"
  if ! wait_for 30 loaded k8s-apparmor-example-deny-write || ! wait_for 30 loaded custom.ctr-omit \
      || ! wait_for 30 loaded custom.ctrallow; then
    fail 12-containers "profiles not loaded: $(armorctl status 2>&1 | tail -n 3)"
    return
  fi
  local check='cat /proc/self/attr/current; if echo x > /tmp/w 2>/dev/null; then echo WRITE-ALLOWED; else echo WRITE-REFUSED; fi'
  local rt out
  for rt in runc podman ctr; do
    out=$("${rt}_run" k8s-apparmor-example-deny-write "$check")
    if grep -q '^k8s-apparmor-example-deny-write (enforce)' <<<"$out" && grep -q WRITE-REFUSED <<<"$out"; then
      pass "12-deny-write-$rt"
    else
      fail "12-deny-write-$rt" "$(tr '\n' ' ' <<<"$out" | tail -c 300)"
    fi
  done

  # A denial from inside a container shows in armorctl, and suggest allows it.
  out=$(ctr_run custom.ctr-omit 'echo x > /tmp/vm-omit; cat /proc/self/attr/current')
  if grep -q '^custom.ctr-omit (enforce)' <<<"$out" \
      && wait_for 30 bash -c "armorctl denials --profile custom.ctr-omit | grep -q '/tmp/vm-omit'" \
      && armorctl suggest custom.ctr-omit | grep -q '/tmp/vm-omit.* w'; then
    pass 13-container-denial
  else
    fail 13-container-denial "$(tr '\n' ' ' <<<"$out"; armorctl denials --profile custom.ctr-omit 2>&1 | tail -n 2)"
  fi

  # An allow-list spec confines a container: the listed program runs, an
  # unlisted one is refused, and suggest --spec names it.
  out=$(ctr_run custom.ctrallow 'true && echo LISTED-RAN; if /bin/other true 2>/dev/null; then echo UNLISTED-RAN; else echo UNLISTED-REFUSED; fi')
  if grep -q LISTED-RAN <<<"$out" && grep -q UNLISTED-REFUSED <<<"$out" \
      && wait_for 30 bash -c "armorctl suggest --spec custom.ctrallow | grep -q '/bin/other'"; then
    pass 14-container-allow-list
  else
    fail 14-container-allow-list "$(tr '\n' ' ' <<<"$out"; armorctl suggest --spec custom.ctrallow 2>&1 | tail -n 2)"
  fi

  # A running container keeps its profile loaded after the file is deleted
  # (deferred); the removal completes when the container stops.
  # The runtime must be able to stop it: on AppArmor 4 systems runc runs in
  # a profile of its own (`runc`), so the container receives from that peer.
  cat > "$P/custom.ctr-run" <<'EOF'
#include <tunables/global>
profile custom.ctr-run flags=(attach_disconnected) {
  #include <abstractions/base>
  signal (receive) peer=unconfined,
  signal (receive) peer=runc,
  signal (receive) peer=crun,
  signal (send,receive) peer=custom.ctr-run,
  /** rmix,
}
EOF
  wait_for 30 loaded custom.ctr-run || true
  ctr_rootfs "$CTR/run-rootfs"
  # Until the profile lets it write, the container keeps trying.
  ctr run -d --rootfs --apparmor-profile custom.ctr-run "$CTR/run-rootfs" vm-run \
    /bin/sh -c 'until echo x > /tmp/swap 2>/dev/null; do sleep 0.3; done; sleep 600' >/dev/null 2>&1
  sleep 3
  # Its denials name the container (containerd's cgroup: /default/vm-run).
  if wait_for 30 bash -c "armorctl denials --profile custom.ctr-run --json | grep -q '\"container_id\":\"vm-run\"'" \
      && armorctl denials --profile custom.ctr-run | grep -q 'container=vm-run'; then
    pass 16-container-attribution
  else
    fail 16-container-attribution "$(armorctl denials --profile custom.ctr-run --json 2>&1 | tail -n 1 | cut -c1-300)"
  fi
  # Replaced while it runs: its next write is judged by the new version.
  if [ ! -e "$CTR/run-rootfs/tmp/swap" ]; then
    sed -i 's|^  /\*\* rmix,|  /** rmix,\n  /tmp/** w,|' "$P/custom.ctr-run"
    if wait_for 30 test -e "$CTR/run-rootfs/tmp/swap"; then
      pass 15-replaced-while-running
    else
      fail 15-replaced-while-running "the running container still cannot write: $(armorctl list | grep ctr-run)"
    fi
  else
    fail 15-replaced-while-running "the first version let the container write"
  fi
  rm -f "$P/custom.ctr-run"
  if wait_for 30 bash -c "armorctl list | grep custom.ctr-run | grep -q deferred" && loaded custom.ctr-run; then
    ctr task kill -s SIGKILL vm-run >/dev/null 2>&1
    wait_for 30 ctr task delete vm-run; ctr container delete vm-run >/dev/null 2>&1
    if wait_for 30 bash -c "! grep -q '^custom.ctr-run ' /sys/kernel/security/apparmor/profiles"; then
      pass 17-container-deferred
    else
      fail 17-container-deferred "not removed after the container stopped"
    fi
  else
    fail 17-container-deferred "not deferred: $(armorctl list 2>&1 | grep ctr-run)"
    ctr task kill -s SIGKILL vm-run >/dev/null 2>&1; sleep 1
    ctr task delete vm-run >/dev/null 2>&1; ctr container delete vm-run >/dev/null 2>&1
  fi
}
