//! Which container and pod a process belongs to, from its cgroup (v2):
//! the layouts of containerd, CRI-O, podman and docker under the systemd
//! and cgroupfs drivers, and kubelet's pod slices. The parse is pure; the
//! reader treats a process that is gone as "unknown", never an error.

use std::path::Path;

/// What a process's cgroup says about it. Every field may be unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The container ID (64 hex digits for the CRI runtimes, podman and
    /// docker; containerd's own name for a `ctr` container).
    pub container_id: Option<String>,
    /// The Kubernetes pod UID, with dashes.
    pub pod_uid: Option<String>,
    /// `containerd`, `cri-o`, `podman`, `docker`, when the layout names it.
    pub runtime: Option<&'static str>,
}

impl Origin {
    pub fn is_empty(&self) -> bool {
        self.container_id.is_none() && self.pod_uid.is_none()
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A pod UID as kubelet writes it in a cgroup name: `pod<uid>` (cgroupfs,
/// dashes) or `kubepods-<qos>-pod<uid>.slice` (systemd, underscores).
fn pod_uid_of(component: &str) -> Option<String> {
    let c = component.strip_suffix(".slice").unwrap_or(component);
    let uid = if let Some(rest) = c.strip_prefix("pod") {
        rest
    } else if c.starts_with("kubepods-") {
        c.rsplit_once("-pod")?.1
    } else {
        return None;
    };
    let uid = uid.replace('_', "-");
    let ok = uid.len() == 36
        && uid.bytes().enumerate().all(|(i, b)| {
            if [8, 13, 18, 23].contains(&i) {
                b == b'-'
            } else {
                b.is_ascii_hexdigit()
            }
        });
    ok.then_some(uid)
}

/// The container of one cgroup path component, and the runtime it names.
fn container_of(component: &str) -> Option<(String, Option<&'static str>)> {
    let c = component.strip_suffix(".scope").unwrap_or(component);
    // conmon, the monitor process of podman and CRI-O, is not the container.
    if c.starts_with("libpod-conmon-") || c.starts_with("crio-conmon-") {
        return None;
    }
    for (prefix, runtime) in [
        ("cri-containerd-", "containerd"),
        ("crio-", "cri-o"),
        ("libpod-", "podman"),
        ("docker-", "docker"),
    ] {
        if let Some(id) = c.strip_prefix(prefix)
            && is_hex64(id)
        {
            return Some((id.to_owned(), Some(runtime)));
        }
    }
    is_hex64(c).then(|| (c.to_owned(), None))
}

/// Read a `/proc/PID/cgroup` text. The unified (v2) line `0::PATH` is used;
/// on a hybrid host, the first v1 line whose path names a container.
pub fn parse_cgroup(text: &str) -> Origin {
    let mut paths: Vec<&str> = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(_), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" {
            paths.insert(0, path);
        } else {
            paths.push(path);
        }
    }
    for path in paths {
        let o = parse_path(path);
        if !o.is_empty() {
            return o;
        }
    }
    Origin::default()
}

/// The origin a cgroup path names.
pub fn parse_path(path: &str) -> Origin {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut o = Origin::default();
    for c in &comps {
        if o.pod_uid.is_none() {
            o.pod_uid = pod_uid_of(c);
        }
    }
    // The innermost component naming a container (podman with a cgroup
    // namespace nests its processes one level deeper, `…/container`).
    for c in comps.iter().rev() {
        if let Some((id, rt)) = container_of(c) {
            o.container_id = Some(id);
            o.runtime = rt;
            break;
        }
    }
    // containerd outside Kubernetes (`ctr run`, cgroupfs): `/NAMESPACE/ID`.
    if o.container_id.is_none()
        && let [ns, id, ..] = comps.as_slice()
        && ["default", "moby", "k8s.io"].contains(ns)
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        o.container_id = Some((*id).to_owned());
        o.runtime = Some(if *ns == "moby" { "docker" } else { "containerd" });
    }
    o
}

/// The origin of process `pid` under `proc_root` (normally `/proc`); a
/// process that is gone, or unreadable, has none.
pub fn of_pid(proc_root: &Path, pid: u32) -> Origin {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup"))
        .map(|t| parse_cgroup(&t))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e";
    const UID: &str = "1b2c3d4e-5f60-4718-8293-a4b5c6d7e8f9";

    fn case(path: &str) -> Origin {
        parse_cgroup(&format!("0::{path}\n"))
    }

    #[test]
    fn every_runtime_and_driver() {
        let uid_ = UID.replace('-', "_");
        let cases: Vec<(String, Option<&str>, Option<&str>)> = vec![
            // containerd under kubelet, systemd and cgroupfs drivers.
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/cri-containerd-{ID}.scope"
                ),
                Some("containerd"),
                Some(UID),
            ),
            (format!("/kubepods/besteffort/pod{UID}/{ID}"), None, Some(UID)),
            // Guaranteed QoS has no QoS slice.
            (
                format!("/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{ID}.scope"),
                Some("containerd"),
                Some(UID),
            ),
            // CRI-O, systemd and cgroupfs.
            (
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/crio-{ID}.scope"),
                Some("cri-o"),
                Some(UID),
            ),
            (
                format!("/kubepods/burstable/pod{UID}/crio-{ID}"),
                Some("cri-o"),
                Some(UID),
            ),
            // podman, systemd (root and rootless, with a cgroup namespace) and cgroupfs.
            (format!("/machine.slice/libpod-{ID}.scope"), Some("podman"), None),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
                Some("podman"),
                None,
            ),
            (format!("/libpod_parent/libpod-{ID}"), Some("podman"), None),
            // docker, systemd and cgroupfs; docker under kubelet (cri-dockerd).
            (format!("/system.slice/docker-{ID}.scope"), Some("docker"), None),
            (format!("/docker/{ID}"), None, None),
            (
                format!(
                    "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/docker-{ID}.scope"
                ),
                Some("docker"),
                Some(UID),
            ),
        ];
        for (path, runtime, pod) in cases {
            let o = case(&path);
            assert_eq!(o.container_id.as_deref(), Some(ID), "{path}");
            assert_eq!(o.runtime, runtime, "{path}");
            assert_eq!(o.pod_uid.as_deref(), pod, "{path}");
        }
    }

    #[test]
    fn ctr_conmon_hosts_and_garbage() {
        let o = case("/default/vm-ctr-1234");
        assert_eq!(o.container_id.as_deref(), Some("vm-ctr-1234"));
        assert_eq!(o.runtime, Some("containerd"));
        // conmon is not the container; a host service is none.
        assert!(case(&format!("/machine.slice/libpod-conmon-{ID}.scope")).is_empty());
        assert!(case("/system.slice/ssh.service").is_empty());
        assert!(case("/user.slice/user-0.slice/session-1.scope").is_empty());
        assert!(case("/").is_empty());
        assert!(parse_cgroup("").is_empty());
        assert!(parse_cgroup("garbage\n::\n0:\n").is_empty());
        // A pod slice without a container (the pause process's parent).
        let o = case(&format!("/kubepods/besteffort/pod{UID}"));
        assert_eq!(o.pod_uid.as_deref(), Some(UID));
        assert_eq!(o.container_id, None);
        // cgroup v1 (hybrid): the first line naming a container.
        let v1 = format!("12:pids:/docker/{ID}\n1:name=systemd:/docker/{ID}\n0::/\n");
        assert_eq!(parse_cgroup(&v1).container_id.as_deref(), Some(ID));
    }

    #[test]
    fn a_process_that_is_gone_has_no_origin() {
        let dir = tempfile::tempdir().unwrap();
        assert!(of_pid(dir.path(), 4242).is_empty());
        std::fs::create_dir_all(dir.path().join("4242")).unwrap();
        std::fs::write(
            dir.path().join("4242/cgroup"),
            format!("0::/system.slice/docker-{ID}.scope\n"),
        )
        .unwrap();
        assert_eq!(of_pid(dir.path(), 4242).container_id.as_deref(), Some(ID));
    }
}
