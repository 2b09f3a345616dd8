//! armord: keeps a node's AppArmor profiles in step with a sync directory and
//! turns AppArmor audit records into queryable denial events.
//!
//! The module map and the rules that never bend are in DESIGN.md.

pub mod apparmor;
pub mod audit;
pub mod cli;
pub mod config;
pub mod container;
pub mod daemon;
pub mod dbus;
pub mod escape;
pub mod failpoint;
pub mod human;
pub mod journal;
pub mod kaudit;
pub mod logging;
pub mod notify;
pub mod reconcile;
pub mod signing;
pub mod source;
pub mod spec;
pub mod state;
pub mod watch;
