//! `armord`'s command line (here so that man pages and completions are
//! generated from the same definitions).

use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "armord",
    version,
    about = "Keeps a node's AppArmor profiles in step with a sync directory"
)]
pub struct ArmordArgs {
    /// Configuration file; its drop-ins are read from PATH.d/*.toml.
    /// Default /etc/armord/armord.toml (which may be absent); a path given
    /// must exist.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// A source directory (plain, ConfigMap or git-sync; detected). Repeat
    /// for more. Replaces the configured sources.
    #[arg(long, value_name = "DIR")]
    pub source: Vec<PathBuf>,
    /// State directory (manifest and store). Overrides the configuration.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Run one reconcile, print a summary and exit: 0 in step, 2 when a file
    /// was invalid or refused or a mass removal is held, 1 on a fatal error.
    #[arg(long)]
    pub once: bool,
    /// With --once: remove profiles even when more than the mass-removal
    /// share of a source's profiles would go at once (an empty revision).
    #[arg(long, requires = "once")]
    pub allow_mass_removal: bool,
    /// With --once: apply a signed revision of a source whose last applied
    /// serial was lost, and take its serial as the floor again.
    #[arg(long, requires = "once")]
    pub accept_signed_serial: bool,
    /// Use a simulated kernel under the state directory (no AppArmor needed).
    #[arg(long)]
    pub simulate: bool,
    /// Print the effective configuration (or its errors, exit 1) and exit.
    #[arg(long)]
    pub check_config: bool,
    /// The D-Bus bus to serve on (`none`: no D-Bus). Default: the system
    /// bus; with --simulate, a socket in the state directory that
    /// `armorctl --simulate` finds.
    #[arg(long, value_enum)]
    pub bus: Option<crate::dbus::Bus>,
    /// Log debug messages.
    #[arg(long, short)]
    pub verbose: bool,
}
