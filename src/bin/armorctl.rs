//! armorctl: inspect and drive armord, and debug AppArmor denials.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = armord::cli::Cli::parse();
    match armord::cli::run(cli) {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("armorctl: {e}");
            ExitCode::from(1)
        }
    }
}
