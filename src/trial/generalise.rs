//! What is unstable between runs of the same workload, made stable in a
//! learned rule: the process and task ids in `/proc` paths. Nothing else is
//! generalised: a path is learned as the exact path the kernel reported, so
//! a learned rule never allows more than the access that was seen, apart
//! from the same file of another process.

use crate::audit::suggest::{escape_glob, quote_if_needed};

/// The pattern for one process or task id: a digit, then anything but `/`.
pub const ID: &str = "[0-9]*";

/// The file pattern a learned path becomes: the path matched literally,
/// except that `/proc/PID/` and `/proc/PID/task/TID/` match any process
/// and task (the kernel reports `/proc/self/…` as the pid it resolves to).
pub fn file_pattern(path: &str) -> String {
    if !path.starts_with("/proc/") {
        // Nothing to generalise: escaped whole (`/` is never escaped).
        return quote_if_needed(escape_glob(path));
    }
    let parts: Vec<&str> = path.split('/').collect();
    let is_proc = parts.len() > 2 && parts[0].is_empty() && parts[1] == "proc";
    let id = |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
    let out: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let pid = is_proc && i == 2 && id(p);
            let tid = is_proc && i == 4 && parts[3] == "task" && id(parts[2]) && id(p);
            if pid || tid { ID.to_owned() } else { escape_glob(p) }
        })
        .collect();
    quote_if_needed(out.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_and_task_ids_in_proc_match_any_process() {
        assert_eq!(file_pattern("/proc/1234/status"), "/proc/[0-9]*/status");
        assert_eq!(file_pattern("/proc/1/task/77/stat"), "/proc/[0-9]*/task/[0-9]*/stat");
        assert_eq!(file_pattern("/proc/1234/"), "/proc/[0-9]*/");
    }

    #[test]
    fn nothing_else_is_generalised() {
        assert_eq!(file_pattern("/proc/sys/kernel/pid_max"), "/proc/sys/kernel/pid_max");
        assert_eq!(file_pattern("/proc/12a/status"), "/proc/12a/status");
        assert_eq!(file_pattern("/srv/1234/data"), "/srv/1234/data");
        assert_eq!(file_pattern("/proc/sys/task/12"), "/proc/sys/task/12");
        assert_eq!(file_pattern("/tmp/a*b"), "/tmp/a\\*b");
        assert_eq!(file_pattern("/tmp/a b"), "\"/tmp/a b\"");
        // A pid past any kernel's limit is a name, not a pid.
        assert_eq!(file_pattern("/proc/12345678901/x"), "/proc/12345678901/x");
    }
}
