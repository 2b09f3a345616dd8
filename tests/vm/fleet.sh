# The fleet's view through the journal's own transport: sourced by
# scenarios.sh (pass, fail, wait_for, audit_socket). systemd-journal-upload
# ships this node's journal to systemd-journal-remote on loopback, as a node
# ships to a collector; armorctl summarises the collector's directory.

REMOTE_DIR=/var/log/journal/remote

# The ARMORD_* fields, and journald's own that say who wrote it, of the
# entries matching MATCH... in the journal selected by the first arguments.
armord_fields() {
  journalctl "$@" --no-pager -o export \
    | grep -aE '^(ARMORD_[A-Z_]*|_HOSTNAME|_UID|_SYSTEMD_UNIT|MESSAGE_ID)=' | sort
}

fleet_vm() {
  audit_socket
  # The collector: the packaged socket (port 19532) and service, with one
  # line changed: plain HTTP on loopback (a fleet uses --listen-https with
  # its certificates, the unit's default).
  mkdir -p /etc/systemd/system/systemd-journal-remote.service.d
  printf '[Service]\nExecStart=\nExecStart=/lib/systemd/systemd-journal-remote --listen-http=-3 --output=%s/\n' "$REMOTE_DIR" \
    > /etc/systemd/system/systemd-journal-remote.service.d/50-vm.conf
  # The node: one line, where to upload.
  mkdir -p /etc/systemd/journal-upload.conf.d
  printf '[Upload]\nURL=http://127.0.0.1:19532\n' > /etc/systemd/journal-upload.conf.d/50-vm.conf
  systemctl daemon-reload
  systemctl enable -q --now systemd-journal-remote.socket
  systemctl restart systemd-journal-upload

  # A denial armord re-logs, and an entry an unprivileged user writes to
  # look like one (any process may log any field but journald's own).
  local tag="vm-fleet-$RANDOM" forged_tag="vm-fleet-forged-$RANDOM"
  aa-exec -p custom.deny-write -- sh -c "echo x > /root/$tag" 2>/dev/null
  setpriv --reuid=65534 --regid=65534 --clear-groups logger --journald <<ENTRY
MESSAGE_ID=3c1f6a0e8b2d4c57a9e4d21b7f5c8e90
MESSAGE=apparmor="DENIED" operation="open" profile="custom.deny-write" name="/root/$forged_tag"
ARMORD_PROFILE=custom.deny-write
ARMORD_KIND=DENIED
ARMORD_NAME=/root/$forged_tag
ARMORD_RECORD={"kind":"DENIED","profile":"custom.deny-write","operation":"open","name":"/root/$forged_tag","denied":"w"}
ENTRY

  # Both arrive at the collector.
  local shipped=0
  if wait_for 90 bash -c "armorctl denials --profile custom.deny-write --directory $REMOTE_DIR --json 2>/dev/null | grep -q '/root/$tag'" \
      && wait_for 30 bash -c "journalctl -D $REMOTE_DIR --no-pager -o cat ARMORD_NAME=/root/$forged_tag | grep -q ."; then
    shipped=1
  fi
  local local_fields remote_fields summary rc
  local_fields=$(armord_fields "ARMORD_NAME=/root/$tag" _SYSTEMD_UNIT=armord.service)
  remote_fields=$(armord_fields -D "$REMOTE_DIR" "ARMORD_NAME=/root/$tag" _SYSTEMD_UNIT=armord.service)
  summary=$(armorctl denials --summary --by host --directory "$REMOTE_DIR" 2>&1); rc=$?
  sed 's/^/INFO fleet: /' <<<"$summary"
  echo "INFO fleet: files: $(ls "$REMOTE_DIR" | tr '\n' ' ')"
  # Every ARMORD_* field arrives as armord wrote it, with journald's own.
  if [ "$shipped" = 1 ] && [ -n "$local_fields" ] && [ "$local_fields" = "$remote_fields" ] \
      && grep -q '^ARMORD_RECORD=' <<<"$remote_fields" && grep -qx '_SYSTEMD_UNIT=armord.service' <<<"$remote_fields" \
      && [ "$rc" = 0 ] && grep -qE "^ *[0-9]+  $(hostname) " <<<"$summary"; then
    pass 23-fleet-upload
  else
    fail 23-fleet-upload "shipped=$shipped rc=$rc; local: $(wc -l <<<"$local_fields") fields, remote: $(wc -l <<<"$remote_fields"); $(diff <(echo "$local_fields") <(echo "$remote_fields") | head -n 4 | tr '\n' ' '); upload: $(systemctl is-active systemd-journal-upload) $(journalctl -u systemd-journal-upload -u systemd-journal-remote --no-pager -n 4 -o cat | tr '\n' ' ')"
  fi
  # The forged entry reached the collector, and is counted as an
  # imitation, never shown. The whole journal is shipped, so the earlier
  # forged-entry scenario's imitation is counted too, and journald names a
  # writer's command only when it reads /proc before the writer exits
  # ("(?)" otherwise): the uid is what identifies ours.
  local shown
  shown=$(armorctl denials --directory "$REMOTE_DIR" 2>&1)
  if [ "$shipped" = 1 ] && ! grep -q "$forged_tag" <<<"$shown" \
      && grep -qE "imitating armord's, ignored \(written by .*uid 65534 \(" <<<"$shown" \
      && ! armorctl denials --summary --json --directory "$REMOTE_DIR" 2>/dev/null | grep -q "$forged_tag"; then
    pass 23-fleet-forged-ignored
  else
    fail 23-fleet-forged-ignored "$(grep -E "$forged_tag|imitating" <<<"$shown" | head -n 3 | tr '\n' ' ')"
  fi
  systemctl disable -q --now systemd-journal-upload systemd-journal-remote.socket systemd-journal-remote 2>/dev/null || true
}
