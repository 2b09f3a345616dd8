//! `armorctl generate-assets`: man pages and completions.

use super::*;

/// Man pages (`man/*.1`, `man/armord.8`) and completions for bash, zsh and
/// fish, generated from the clap definitions.
pub(super) fn generate_assets(dir: &std::path::Path) -> Result<i32, CliError> {
    use clap::CommandFactory;
    let io = |p: &std::path::Path| {
        let p = p.to_owned();
        move |e: std::io::Error| CliError::Io(p, e)
    };
    let man = dir.join("man");
    let comp = dir.join("completions");
    for d in [&man, &comp] {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let write_man = |cmd: clap::Command, file: std::path::PathBuf| -> Result<(), CliError> {
        let mut buf = Vec::new();
        let section = if file.extension().is_some_and(|e| e == "8") {
            "8"
        } else {
            "1"
        };
        clap_mangen::Man::new(cmd)
            .section(section)
            .render(&mut buf)
            .map_err(io(&file))?;
        std::fs::write(&file, buf).map_err(io(&file))
    };
    let ctl = Cli::command();
    write_man(ctl.clone(), man.join("armorctl.1"))?;
    for sub in ctl.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("armorctl-{}", sub.get_name());
        write_man(sub.clone().name(name.clone()), man.join(format!("{name}.1")))?;
    }
    write_man(ArmordArgs::command(), man.join("armord.8"))?;
    for (shell, name) in [
        (clap_complete::Shell::Bash, "bash"),
        (clap_complete::Shell::Zsh, "zsh"),
        (clap_complete::Shell::Fish, "fish"),
    ] {
        for (mut cmd, bin) in [(Cli::command(), "armorctl"), (ArmordArgs::command(), "armord")] {
            let d = comp.join(name);
            std::fs::create_dir_all(&d).map_err(io(&d))?;
            clap_complete::generate_to(shell, &mut cmd, bin, &d).map_err(io(&d))?;
        }
    }
    Ok(0)
}
