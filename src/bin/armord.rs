//! armord: keeps the node's AppArmor profiles in step with its sync directories.

#![warn(clippy::unwrap_used, clippy::expect_used)]

use armord::cli::ArmordArgs as Args;
use armord::config::{self, SourceConfig};
use armord::daemon;
use clap::Parser;
use std::process::ExitCode;

fn load_config(args: &Args) -> Result<config::Config, config::ConfigError> {
    let mut cfg = match &args.config {
        Some(path) => config::load_given(path)?,
        None => config::load(std::path::Path::new(config::DEFAULT_CONFIG))?,
    };
    if !args.source.is_empty() {
        cfg.sources = args
            .source
            .iter()
            .map(|p| SourceConfig {
                path: config::absolute_from_cwd(p),
                layout: config::LayoutKind::Auto,
                link: None,
                subdir: None,
                signatures: Default::default(),
            })
            .collect();
    }
    if let Some(d) = &args.state_dir {
        cfg.state_dir = config::absolute_from_cwd(d);
    }
    if args.simulate {
        daemon::simulate_paths(&mut cfg);
    }
    Ok(cfg)
}

fn print_error(e: &dyn std::error::Error) {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    eprintln!("armord: error: {}", armord::escape::text(&msg));
}

fn main() -> ExitCode {
    armord::daemon::memory::limit_arenas();
    let args = Args::parse();
    armord::logging::init("armord", args.verbose);
    let cfg = match load_config(&args) {
        Ok(c) => c,
        Err(e) => {
            print_error(&e);
            return ExitCode::from(1);
        }
    };
    if args.check_config {
        print!("{}", cfg.to_toml());
        return ExitCode::SUCCESS;
    }
    if args.simulate {
        log::info!(
            "simulation: state, cache and kernel under {}",
            armord::escape::path(&cfg.state_dir)
        );
    }
    let result = if args.once {
        daemon::run_once(cfg, args.simulate, args.allow_mass_removal, args.accept_signed_serial)
    } else {
        let reload_args = args.clone();
        daemon::run(
            cfg,
            args.simulate,
            args.bus,
            Box::new(move || load_config(&reload_args)),
        )
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            print_error(&e);
            ExitCode::from(1)
        }
    }
}
