//! The man pages' own sections (beyond what clap knows): FILES, EXIT
//! STATUS, EXAMPLES, SEE ALSO, and for armord(8) CONFIGURATION, SIGNALS and
//! JOURNAL FIELDS. Written as plain text here and turned into roff.

/// Text → roff: backslashes and minus signs escaped, and a line that starts
/// with `.` or `'` kept from reading as a request.
pub(super) fn roff_text(s: &str) -> String {
    let mut out = String::new();
    for line in s.lines() {
        let l = line.replace('\\', "\\e").replace('-', "\\-");
        if l.starts_with('.') || l.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// One section: `.SH TITLE`, then its items. An item is `term` + text
/// (`.TP`) or, with an empty term, a paragraph (`.PP`); a term starting
/// with `$ ` is an example command shown as typed.
fn section(title: &str, items: &[(&str, &str)]) -> String {
    let mut s = format!(".SH {title}\n");
    for (term, text) in items {
        if term.is_empty() {
            s.push_str(".PP\n");
            s.push_str(&roff_text(text));
        } else if let Some(cmd) = term.strip_prefix("$ ") {
            s.push_str(".PP\n");
            s.push_str(&roff_text(text));
            s.push_str(".PP\n.RS 4\n.nf\n");
            s.push_str(&roff_text(cmd));
            s.push_str(".fi\n.RE\n");
        } else {
            s.push_str(".TP\n\\fB");
            s.push_str(roff_text(term).trim_end());
            s.push_str("\\fR\n");
            s.push_str(&roff_text(text));
        }
    }
    s
}

/// A preformatted block (a file shown as it is).
fn verbatim(title: &str, intro: &str, body: &str) -> String {
    let mut s = format!(".SH {title}\n.PP\n");
    s.push_str(&roff_text(intro));
    s.push_str(".PP\n.RS 4\n.nf\n");
    s.push_str(&roff_text(body));
    s.push_str(".fi\n.RE\n");
    s
}

const FILES: &[(&str, &str)] = &[
    (
        "/etc/armord/armord.toml, /etc/armord/armord.toml.d/*.toml",
        "The configuration and its drop-ins (see armord(8), CONFIGURATION).",
    ),
    (
        "/etc/armord/profiles.d/",
        "The default sync directory: one AppArmor profile per file, or an allow-list spec NAME.allow.toml.",
    ),
    (
        "/var/lib/armord/",
        "State: state.json (the profiles armord owns and the content each was loaded from), pending.log (the loads in flight, for a crash between a load and its record), store/ (the last-good content, restored at boot), journal.cursor (where the denial follower stopped).",
    ),
    ("/var/cache/armord/", "apparmor_parser's compiled-policy cache."),
    (
        "/usr/share/dbus-1/system.d/org.armord.Armord1.conf",
        "Who may call what on the D-Bus interface: reading for everyone, Sync for root.",
    ),
    (
        "/sys/kernel/security/apparmor/",
        "The kernel's policy interface: profiles lists what is loaded.",
    ),
];

const SEE_ALSO_CTL: &str = "armord(8), armorctl(1), apparmor(7), apparmor_parser(8), journalctl(1), systemctl(1)";

/// What one page adds to clap's sections.
pub(super) fn extra(page: &str) -> String {
    if page == "armord" {
        return armord_sections();
    }
    let (exit, examples) = armorctl_page(page);
    let mut s = String::new();
    s.push_str(&section("FILES", FILES));
    s.push_str(&section("EXIT STATUS", &[("", &exit)]));
    if !examples.is_empty() {
        s.push_str(&section("EXAMPLES", &examples));
    }
    s.push_str(&section("SEE ALSO", &[("", SEE_ALSO_CTL)]));
    s
}

/// An armorctl page's exit status and examples.
fn armorctl_page(page: &str) -> (String, Vec<(&'static str, &'static str)>) {
    let exit_std = "0: success. 1: an error (armord cannot be reached, a file cannot be read, a usage error prints clap's message with 2).";
    match page {
        "armorctl" => (
            "0: success. 1: an error, said on standard error. 2: the command ran and found problems (status: not ready or a file with a problem; sync, validate, render, verify: a file refused). Usage errors also exit 2.".into(),
            vec![
                ("$ armorctl status", "Is the node's policy in step, and what is wrong if not:"),
                ("$ armorctl denials --summary --since today", "Today's denials, the most frequent first:"),
                ("$ armorctl --simulate --config examples/armord.toml list", "Reach a simulation started with armord --simulate --config examples/armord.toml:"),
            ],
        ),
        "armorctl-status" => (
            "0: armord is ready and no file has a problem. 2: armord is starting, reloading or degraded, or a file has a problem (each is printed). 1: armord cannot be reached.".into(),
            vec![("$ armorctl status || journalctl -u armord -n 20", "Check a node, and read armord's log when something is wrong:")],
        ),
        "armorctl-list" => (
            exit_std.into(),
            vec![
                ("$ armorctl list", "Every profile armord owns, its mode, state and file:"),
                ("$ armorctl list --json | jq -r 'select(.state != \"loaded\") | .name'", "The profiles that are not simply loaded:"),
            ],
        ),
        "armorctl-sync" => (
            "0: the node is in step. 2: a file was invalid or refused, or a mass removal is held (the rest was applied). 1: armord cannot be reached, or permission denied (root only).".into(),
            vec![
                ("$ sudo armorctl sync", "Reconcile now instead of waiting for the next change:"),
                ("$ sudo armorctl sync --allow-mass-removal", "Let through a held removal of most of a source's profiles (an intended empty revision):"),
            ],
        ),
        "armorctl-wait" => (
            "0: armord is ready (possibly with problems, said on standard error). 1: the timeout passed, or there is no D-Bus bus at all (said at once).".into(),
            vec![("$ armorctl wait --timeout 2m && kubeadm join ...", "In cloud-init, before the node joins:")],
        ),
        "armorctl-validate" => (
            "0: every file would be loaded. 2: a file is invalid or refused (each problem as FILE:LINE: message). 1: an error.".into(),
            vec![("$ armorctl validate profiles/*", "Check a change before it is committed to the sync directory:")],
        ),
        "armorctl-render" => (
            "0: every spec rendered. 2: a spec is wrong (FILE:LINE: message); the others are still printed. 1: an error.".into(),
            vec![("$ armorctl render custom.nginx.allow.toml", "The profile an allow-list spec becomes:")],
        ),
        "armorctl-sign" => (
            exit_std.into(),
            vec![(
                "$ armorctl sign ./revision --key ~/.ssh/armord_ed25519 --expires 30d",
                "Sign a revision before it is published to a source with signatures = \"required\":",
            )],
        ),
        "armorctl-verify" => (
            "0: the revision verifies with a trusted key and covers every file. 2: it does not (the reason is printed). 1: an error.".into(),
            vec![("$ armorctl verify /srv/policy/current", "Check what a node would accept:")],
        ),
        "armorctl-audit" | "armorctl-audit-parse" => (
            "0: every line was an AppArmor record. 2: a line was not (its JSON object has \"line\" and \"error\"). 1: the file cannot be read.".into(),
            vec![
                ("$ armorctl audit parse /var/log/audit/audit.log", "auditd's log as JSON, one object per record:"),
                ("$ journalctl -k -o cat | armorctl audit parse --format text", "The kernel's copies, readable:"),
            ],
        ),
        "armorctl-denials" => (
            "0: success (no denials is not an error; it is said on standard error). 3: some journal files given with --directory or --file could not be read, each named on standard error; the rest were. 1: journalctl cannot be run, or no journal file could be read.".into(),
            vec![
                ("$ armorctl denials --profile custom.nginx --since -1h", "The last hour of one profile's denials:"),
                ("$ armorctl denials --summary --json", "Grouped, as JSON:"),
                ("$ armorctl denials --follow", "Watch denials as they happen:"),
                ("$ armorctl denials --summary --by host --directory /var/log/journal/remote", "A fleet's denials, shipped by systemd-journal-upload, by node:"),
                ("$ armorctl denials --summary --by profile --file '/srv/journals/*.journal'", "Journal files copied from nodes, by profile (with the number of hosts):"),
            ],
        ),
        "armorctl-promote" | "armorctl-trial" => (
            "0: done (said on standard output). 2: armord refused (the profile is not in trial, or never was). 1: armord cannot be reached, or permission denied (root only).".into(),
            vec![
                ("$ sudo armorctl promote custom.web", "Enforce a profile in trial now, on this node:"),
                ("$ sudo armorctl trial custom.web", "Put a promoted profile back in trial (complain mode):"),
            ],
        ),
        "armorctl-learn" => (
            "0: rules printed (or the diff). 1: the profile's loaded version learned nothing. 2: an error (said on standard error).".into(),
            vec![
                ("$ armorctl learn custom.web", "The profile's file with what its loaded version would have denied added:"),
                ("$ armorctl learn custom.web --diff | git -C /srv/policy apply", "Commit what a trial learned (a new version starts a new trial):"),
            ],
        ),
        "armorctl-doctor" => (
            "0: no check found an error (warnings allowed). 1: at least one error. 2: doctor could not run (its configuration cannot be read).".into(),
            vec![
                ("$ sudo armorctl doctor", "Every check, with the fix for each line that is not ok (run as root: the kernel's audit status and AppArmor's audit parameters need it):"),
                ("$ armorctl doctor --json | jq '.checks[] | select(.level != \"ok\")'", "The lines that need a look, as JSON ({root, as_root, checks: [{check, level, fact, fix}]}):"),
            ],
        ),
        "armorctl-suggest" => (
            "0: rules printed. 2: a denial could not be turned into a rule (said). 3: rules printed, but some journal files given with --directory or --file could not be read (each named). 1: no denials, or an error.".into(),
            vec![
                ("$ armorctl suggest custom.nginx --since today", "Rules that would allow what custom.nginx was denied today:"),
                ("$ armorctl suggest custom.nginx --spec", "Additions to its allow-list spec instead:"),
            ],
        ),
        _ => (exit_std.into(), vec![]),
    }
}

/// armord(8)'s own sections: configuration, signals, journal fields, files,
/// exit status, examples.
fn armord_sections() -> String {
    let mut s = String::new();
    s.push_str(&verbatim(
            "CONFIGURATION",
            "/etc/armord/armord.toml, then /etc/armord/armord.toml.d/*.toml in lexical order (a key set later wins; [[source]] tables add up). Every key is optional; unknown keys are errors. Relative paths are relative to the file that names them. Check with armord --check-config; apply with systemctl reload armord. The shipped file, with every key and its default:",
            include_str!("../../packaging/armord.toml"),
        ));
    s.push_str(&section(
            "SIGNALS",
            &[
                ("SIGHUP", "Read the configuration again (systemctl reload armord) and reconcile. A configuration with errors is refused; the running one stays."),
                ("SIGTERM, SIGINT", "Stop: a parser run in flight finishes its file, then armord exits. Every loaded profile stays loaded."),
            ],
        ));
    s.push_str(&section(
            "JOURNAL FIELDS",
            &[
                ("", "Each AppArmor record armord reads from the journal is re-logged once as one entry with MESSAGE_ID=3c1f6a0e8b2d4c57a9e4d21b7f5c8e90 (rate-limited per profile, operation and name; the rest are counted and reported with MESSAGE_ID=8d0b5e7a1c3f4e2b9a6d0c4f7e1b3a52 and ARMORD_SUPPRESSED). Query them with journalctl MESSAGE_ID=3c1f6a0e8b2d4c57a9e4d21b7f5c8e90 ARMORD_PROFILE=NAME, or armorctl denials. The fields:"),
                ("ARMORD_KIND", "DENIED, ALLOWED (complain mode), AUDIT, KILLED, HINT, STATUS or ERROR."),
                ("ARMORD_PROFILE", "The profile (label) that confined the process."),
                ("ARMORD_OPERATION", "The operation: open, exec, capable, connect, signal, dbus_method_call, ..."),
                ("ARMORD_NAME", "What was acted on: a path, a capability name, a D-Bus name."),
                ("ARMORD_REQUESTED, ARMORD_DENIED", "The requested and the denied access mask."),
                ("ARMORD_PID, ARMORD_COMM", "The process and its command name."),
                ("ARMORD_AUDIT_ID", "The record's audit id, EPOCH.MILLIS:SERIAL."),
                ("ARMORD_AUDIT_KEY", "The boot id and audit id: what makes each record re-logged exactly once, across restarts."),
                ("ARMORD_CONTAINER_ID, ARMORD_POD_UID, ARMORD_CONTAINER_RUNTIME", "The container, the Kubernetes pod and the runtime the process ran in, read from its cgroup when the record arrives (absent when the process is gone or is no container's)."),
                ("ARMORD_RECORD", "The whole record as JSON (the form armorctl audit parse prints)."),
            ],
        ));
    let files: Vec<(&str, &str)> = FILES.to_vec();
    s.push_str(&section("FILES", &files));
    s.push_str(&section(
            "EXIT STATUS",
            &[(
                "",
                "0: stopped cleanly, or with --once the node is in step. 2 (--once): a file was invalid or refused, or a mass removal is held; the rest was applied. 1: a fatal error (configuration, state directory, no apparmor_parser, no AppArmor in the kernel without --simulate).",
            )],
        ));
    s.push_str(&section(
            "EXAMPLES",
            &[
                ("$ armord --simulate --config examples/armord.toml", "Try it without AppArmor in the kernel (a simulated kernel under the state directory; armorctl --simulate reaches it):"),
                ("$ armord --once --source /srv/profiles", "Reconcile one directory once and print what changed:"),
                ("$ armord --check-config", "Print the effective configuration, or its errors:"),
            ],
        ));
    s.push_str(&section(
        "SEE ALSO",
        &[(
            "",
            "armorctl(1), apparmor(7), apparmor_parser(8), systemd.service(5), journalctl(1)",
        )],
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_escapes_what_would_read_as_markup() {
        assert_eq!(roff_text(".x -y \\z"), "\\&.x \\-y \\ez\n");
        assert_eq!(roff_text("'quoted"), "\\&'quoted\n");
    }

    #[test]
    fn every_page_has_the_sections_a_reader_expects() {
        for page in [
            "armorctl",
            "armorctl-status",
            "armorctl-denials",
            "armorctl-audit-parse",
        ] {
            let s = extra(page);
            for h in [".SH FILES", ".SH EXIT STATUS", ".SH EXAMPLES", ".SH SEE ALSO"] {
                assert!(s.contains(h), "{page}: no {h}");
            }
        }
        let s = extra("armord");
        for h in [
            ".SH CONFIGURATION",
            ".SH SIGNALS",
            ".SH JOURNAL FIELDS",
            ".SH FILES",
            ".SH EXIT STATUS",
            ".SH EXAMPLES",
        ] {
            assert!(s.contains(h), "armord: no {h}");
        }
    }
}
