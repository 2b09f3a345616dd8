//! armord: keeps a node's AppArmor profiles in step with a sync directory and
//! turns AppArmor audit records into queryable denial events.
//!
//! The module map and the rules that never bend are in DESIGN.md.

// Input and the system must never panic armord: no unwrap or expect in
// the library or the binaries (tests may; see clippy.toml). Not in
// Cargo.toml's [lints], which would reach the tests and benchmarks too.
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod apparmor;
pub mod audit;
pub mod cli;
pub mod config;
pub mod container;
pub mod daemon;
pub mod dbus;
pub mod escape;
pub(crate) mod failpoint;
pub(crate) mod human;
pub mod journal;
pub(crate) mod kaudit;
pub mod lint;
pub mod logging;
pub(crate) mod notify;
pub mod reconcile;
pub mod sha;
pub mod signing;
pub mod source;
pub mod spec;
pub mod state;
pub mod trial;
pub(crate) mod watch;
