//! Signed policy: every hostile revision is refused with its own message and
//! the previous policy stays loaded; a signed revision loads in every
//! layout; attachments outside `allowed_attachments` are refused.

mod common;
use common::*;
use ssh_key::{HashAlg, LineEnding, PrivateKey, private::Ed25519Keypair};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// A deterministic ed25519 key pair under the tree: (private, public).
fn keypair(t: &Tree, name: &str, seed: u8) -> (PathBuf, PathBuf) {
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]));
    let private = t.write(&format!("keys/{name}"), &key.to_openssh(LineEnding::LF).unwrap());
    let public = t.write(
        &format!("keys/{name}.pub"),
        &(key.public_key().to_openssh().unwrap() + "\n"),
    );
    (private, public)
}

fn config(t: &Tree, source: &str, layout: &str, extra: &str) -> PathBuf {
    t.write(
        "armord.toml",
        &format!(
            "state_dir = \"state\"\ntrusted_keys = [\"keys/*.pub\"]\nremoval_settle_ms = 0\n{extra}\
             [denials]\nenabled = false\n[[source]]\npath = \"{source}\"\nlayout = \"{layout}\"\nsignatures = \"required\"\n"
        ),
    )
}

fn once(cfg: &Path) -> (i32, String) {
    once_config(cfg)
}

fn sign(dir: &Path, key: &Path, serial: u64) -> String {
    let out = run(
        ARMORCTL,
        &[
            "sign",
            dir.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--serial",
            &serial.to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

/// The simulated kernel's profiles. Its file is written at the first load:
/// absent, the kernel is empty (the tests below also see it hold profiles,
/// so the path is the right one).
fn loaded(t: &Tree) -> String {
    t.try_read("state/simulate/profiles").unwrap_or_default()
}

const A1: &str = "profile custom.a {\n  /tmp/a r,\n}\n";
const A2: &str = "profile custom.a {\n  /tmp/a rw,\n}\n";

#[test]
fn hostile_revisions_are_refused_and_the_last_good_policy_stays() {
    let t = Tree::new();
    let (key, _) = keypair(&t, "ci", 1);
    let (other, _) = keypair(&t, "other", 2);
    std::fs::remove_file(t.path("keys/other.pub")).unwrap();
    let cfg = config(&t, "src", "plain", "");
    let src = t.path("src");
    t.write("src/custom.a", A1);

    // Unsigned: refused, nothing loaded.
    let (code, s) = once(&cfg);
    assert_ne!(code, 0, "{s}");
    assert!(s.contains("armord.manifest is missing"), "{s}");
    assert_eq!(loaded(&t), "");

    // Signed: loaded.
    sign(&src, &key, 10);
    let (code, s) = once(&cfg);
    assert_eq!(code, 0, "{s}");
    assert_eq!(loaded(&t), "custom.a (enforce)\n");
    let v = run(
        ARMORCTL,
        &["--config", cfg.to_str().unwrap(), "verify", src.to_str().unwrap()],
    );
    assert!(
        v.status.success() && text(&v).contains("ok: 1 files signed, serial 10"),
        "{}",
        text(&v)
    );
    let good_revision = std::fs::read_to_string(src.join("armord.manifest")).unwrap();
    let good_signature = std::fs::read_to_string(src.join("armord.manifest.sig")).unwrap();

    let refused = |what: &str, expect: &str| {
        let (code, s) = once(&cfg);
        assert_ne!(code, 0, "{what}: {s}");
        assert!(s.contains(expect), "{what}: wanted {expect:?} in\n{s}");
        assert_eq!(loaded(&t), "custom.a (enforce)\n", "{what}");
        let sha = serde_json::from_str::<serde_json::Value>(&t.read("state/state.json")).unwrap()["profiles"]
            ["custom.a"]["sha256"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            sha,
            armord::source::sha256_hex(A1.as_bytes()),
            "{what}: the loaded version changed"
        );
    };

    // A file changed after signing.
    t.write("src/custom.a", A2);
    refused("changed after signing", "hash mismatch: custom.a");
    t.write("src/custom.a", A1);

    // A file added without re-signing: refused as unsigned; the rest stays.
    t.write("src/custom.b", "profile custom.b {\n}\n");
    let (_, s) = once(&cfg);
    assert!(s.contains("custom.b: unsigned: not listed in armord.manifest"), "{s}");
    assert!(!loaded(&t).contains("custom.b"), "{s}");
    std::fs::remove_file(src.join("custom.b")).unwrap();

    // Signed by a key that is not trusted.
    t.write("src/custom.a", A2);
    sign(&src, &other, 20);
    refused("untrusted key", "unknown key");

    // A signature over another namespace, by the trusted key.
    let private = PrivateKey::read_openssh_file(&key).unwrap();
    let manifest = std::fs::read_to_string(src.join("armord.manifest")).unwrap();
    let sig = private.sign("file", HashAlg::Sha512, manifest.as_bytes()).unwrap();
    t.write("src/armord.manifest.sig", &sig.to_pem(LineEnding::LF).unwrap());
    refused("other namespace", "namespace `file`");

    // A truncated signature.
    sign(&src, &key, 20);
    let full = std::fs::read_to_string(src.join("armord.manifest.sig")).unwrap();
    t.write("src/armord.manifest.sig", &full[..full.len() / 2]);
    refused("truncated signature", "not an SSH signature");

    // A manifest edited after signing (the files match it, the signature not).
    sign(&src, &key, 20);
    let m = std::fs::read_to_string(src.join("armord.manifest")).unwrap();
    t.write("src/armord.manifest", &m.replace("serial = 20", "serial = 21"));
    refused("edited manifest", "bad signature");

    // A manifest that lists a missing file.
    t.write("src/custom.c", "profile custom.c {\n}\n");
    sign(&src, &key, 30);
    std::fs::remove_file(src.join("custom.c")).unwrap();
    refused("missing file", "custom.c is listed in armord.manifest but missing");

    // An expired manifest.
    armord::signing::sign_dir(&src, &key, 40, Some(1_000_000)).unwrap();
    refused("expired", "expired at 1000000");

    // A newer signed revision applies; the older one replayed is a rollback.
    sign(&src, &key, 50);
    let (code, s) = once(&cfg);
    assert_eq!(code, 0, "{s}");
    t.write("src/custom.a", A1);
    t.write("src/armord.manifest", &good_revision);
    t.write("src/armord.manifest.sig", &good_signature);
    let (code, s) = once(&cfg);
    assert_ne!(code, 0, "{s}");
    assert!(s.contains("rollback from serial 50 to 10"), "{s}");
    assert!(loaded(&t).contains("custom.a (enforce)"));

    // A symlinked manifest that leaves the source.
    t.write("outside/armord.manifest", &good_revision);
    std::fs::remove_file(src.join("armord.manifest")).unwrap();
    symlink(t.path("outside/armord.manifest"), src.join("armord.manifest")).unwrap();
    let (code, s) = once(&cfg);
    assert_ne!(code, 0, "{s}");
    assert!(s.contains("symlink leaves the source root"), "{s}");
    assert!(loaded(&t).contains("custom.a (enforce)"));
}

#[test]
fn a_signed_revision_loads_in_every_layout() {
    let t = Tree::new();
    let (key, _) = keypair(&t, "ci", 7);
    // ConfigMap: the revision directory is signed, then swapped in.
    let cm = t.path("cm");
    std::fs::create_dir_all(cm.join("..2026_11_22_1")).unwrap();
    t.write("cm/..2026_11_22_1/custom.cm", "profile custom.cm {\n}\n");
    sign(&cm.join("..2026_11_22_1"), &key, 1);
    symlink("..2026_11_22_1", cm.join("..data")).unwrap();
    for k in ["custom.cm", "armord.manifest", "armord.manifest.sig"] {
        symlink(format!("..data/{k}"), cm.join(k)).unwrap();
    }
    let cfg = config(&t, "cm", "configmap", "");
    let (code, s) = once(&cfg);
    assert_eq!(code, 0, "{s}");
    assert!(loaded(&t).contains("custom.cm (enforce)"), "{s}");

    // git-sync: a signed worktree swapped in, then a tampered one refused.
    let t = Tree::new();
    let (key, _) = keypair(&t, "ci", 7);
    let gs = t.path("gs");
    t.write("gs/.worktrees/h1/custom.gs", "profile custom.gs {\n}\n");
    sign(&gs.join(".worktrees/h1"), &key, 1);
    symlink(".worktrees/h1", gs.join("current")).unwrap();
    let cfg = config(&t, "gs", "git-sync", "");
    let (code, s) = once(&cfg);
    assert_eq!(code, 0, "{s}");
    assert!(loaded(&t).contains("custom.gs (enforce)"), "{s}");
    t.write("gs/.worktrees/h2/custom.gs", "profile custom.gs {\n  /x r,\n}\n");
    sign(&gs.join(".worktrees/h2"), &key, 2);
    t.write("gs/.worktrees/h2/custom.gs", "profile custom.gs {\n  /** rwx,\n}\n");
    symlink(".worktrees/h2", gs.join("next")).unwrap();
    std::fs::rename(gs.join("next"), gs.join("current")).unwrap();
    let (code, s) = once(&cfg);
    assert_ne!(code, 0, "{s}");
    assert!(s.contains("hash mismatch"), "{s}");
}

#[test]
fn an_attachment_outside_the_allowed_globs_is_refused() {
    let t = Tree::new();
    t.write(
        "armord.toml",
        "state_dir = \"state\"\nallowed_attachments = [\"/opt/**\", \"/usr/local/bin/*\"]\n[denials]\nenabled = false\n[[source]]\npath = \"src\"\n",
    );
    t.write("src/evil", "profile custom.evil /usr/sbin/sshd {\n  deny /** rwx,\n}\n");
    t.write("src/fine", "profile custom.fine /opt/app/bin/run {\n}\n");
    t.write("src/byname", "profile custom.byname {\n}\n");
    let (code, s) = once(&t.path("armord.toml"));
    assert_eq!(code, 2, "{s}");
    assert!(
        s.contains("evil: profile `custom.evil` attaches to /usr/sbin/sshd which allowed_attachments (/opt/**, /usr/local/bin/*) does not cover"),
        "{s}"
    );
    let k = loaded(&t);
    assert!(
        k.contains("custom.fine") && k.contains("custom.byname") && !k.contains("custom.evil"),
        "{k}"
    );
}

/// The floor a rollback is judged against survives a damaged, truncated or
/// deleted `signed-serials.json` (the manifest holds it too); where both are
/// lost (the state of an older release without the file), a revision that
/// changes the loaded profiles is held until an operator accepts it.
#[test]
fn a_lost_serial_record_never_lets_a_rollback_through_silently() {
    let t = Tree::new();
    let (key, _) = keypair(&t, "ci", 1);
    let cfg = config(&t, "src", "plain", "");
    let src = t.path("src");
    // Serial 5 with A1, kept aside; serial 6 with A2 applied.
    t.write("src/custom.a", A1);
    sign(&src, &key, 5);
    let old_manifest = std::fs::read_to_string(src.join("armord.manifest")).unwrap();
    let old_sig = std::fs::read_to_string(src.join("armord.manifest.sig")).unwrap();
    let (code, s) = once(&cfg);
    assert_eq!(code, 0, "{s}");
    t.write("src/custom.a", A2);
    sign(&src, &key, 6);
    let (code, s) = once(&cfg);
    assert_eq!(code, 0, "{s}");
    let loaded_sha = |t: &Tree| {
        serde_json::from_str::<serde_json::Value>(&t.read("state/state.json")).unwrap()["profiles"]["custom.a"]
            ["sha256"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(loaded_sha(&t), armord::source::sha256_hex(A2.as_bytes()));
    let roll_back = |t: &Tree| {
        t.write("src/custom.a", A1);
        t.write("src/armord.manifest", &old_manifest);
        t.write("src/armord.manifest.sig", &old_sig);
    };
    let serials = t.path("state/signed-serials.json");

    // The record damaged, truncated, then deleted: the manifest's floor holds.
    for damage in ["{\"/x\": ", "", "delete"] {
        if damage == "delete" {
            let _ = std::fs::remove_file(&serials);
        } else {
            std::fs::write(&serials, damage).unwrap();
        }
        roll_back(&t);
        let (code, s) = once(&cfg);
        assert_ne!(code, 0, "{damage:?}: {s}");
        assert!(s.contains("rollback from serial 6 to 5"), "{damage:?}: {s}");
        assert_eq!(loaded_sha(&t), armord::source::sha256_hex(A2.as_bytes()), "{damage:?}");
        if damage == "{\"/x\": " {
            assert!(t.path("state/signed-serials.json.corrupt").exists());
            assert!(s.contains("damaged"), "{s}");
        }
    }

    // Both lost (a manifest without its serials, as older releases wrote
    // it, and no record): held, not applied, until accepted.
    let mut m: serde_json::Value = serde_json::from_str(&t.read("state/state.json")).unwrap();
    m.as_object_mut().unwrap().remove("serials");
    t.write("state/state.json", &m.to_string());
    let _ = std::fs::remove_file(&serials);
    roll_back(&t);
    let (code, s) = once(&cfg);
    assert_ne!(code, 0, "{s}");
    assert!(s.contains("--accept-signed-serial"), "{s}");
    assert_eq!(loaded_sha(&t), armord::source::sha256_hex(A2.as_bytes()));
    let out = run(
        ARMORD,
        &[
            "--simulate",
            "--once",
            "--accept-signed-serial",
            "--bus",
            "none",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(loaded_sha(&t), armord::source::sha256_hex(A1.as_bytes()));
    // The accepted serial is the floor again.
    let m: serde_json::Value = serde_json::from_str(&t.read("state/state.json")).unwrap();
    assert_eq!(m["serials"][src.to_str().unwrap()], 5, "{m}");
}

/// `armorctl sign` writes its manifest and signature through new
/// temporaries: a symlink planted at the old temporary names or at the
/// files themselves is never followed.
#[test]
fn sign_never_follows_a_planted_symlink() {
    let t = Tree::new();
    let (key, _) = keypair(&t, "ci", 1);
    let src = t.path("src");
    t.write("src/custom.a", A1);
    let victim = t.write("victim", "root-only\n");
    // The names temporaries had (any pid), and the outputs themselves.
    for pid in 1..64 {
        let _ = std::os::unix::fs::symlink(&victim, src.join(format!(".armord.manifest.tmp.{pid}")));
    }
    symlink(&victim, src.join("armord.manifest")).unwrap();
    symlink(&victim, src.join("armord.manifest.sig")).unwrap();
    sign(&src, &key, 3);
    assert_eq!(t.read("victim"), "root-only\n");
    for f in ["armord.manifest", "armord.manifest.sig"] {
        let m = std::fs::symlink_metadata(src.join(f)).unwrap();
        assert!(m.file_type().is_file(), "{f} is still a symlink");
    }
    assert!(t.read("src/armord.manifest").contains("custom.a"));
}
