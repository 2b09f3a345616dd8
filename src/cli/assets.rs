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
    let version = env!("CARGO_PKG_VERSION");
    let write_man = |cmd: clap::Command, page: &str, bin: &str, section: &str| -> Result<(), CliError> {
        let file = man.join(format!("{page}.{section}"));
        let cmd = cmd
            .name(page.to_owned())
            .display_name(page.to_owned())
            .bin_name(bin.to_owned());
        let has_args = cmd.get_arguments().any(|a| !a.is_hide_set());
        let has_subs = cmd.get_subcommands().any(|s| !s.is_hide_set());
        let has_version = cmd.get_version().is_some();
        let m = clap_mangen::Man::new(cmd)
            .section(section)
            .source(format!("armord {version}"))
            .manual("armord");
        let mut buf = Vec::new();
        let rendered = (|| {
            m.render_title(&mut buf)?;
            m.render_name_section(&mut buf)?;
            m.render_synopsis_section(&mut buf)?;
            m.render_description_section(&mut buf)?;
            if has_args {
                m.render_options_section(&mut buf)?;
            }
            if has_subs {
                m.render_subcommands_section(&mut buf)?;
            }
            buf.extend_from_slice(super::man::extra(page).as_bytes());
            if has_version {
                m.render_version_section(&mut buf)?;
            }
            Ok::<(), std::io::Error>(())
        })();
        rendered.map_err(io(&file))?;
        std::fs::write(&file, buf).map_err(io(&file))
    };
    // armorctl(1), and a page for every command and nested command:
    // armorctl-audit-parse(1) for `armorctl audit parse`.
    let mut pages: Vec<(clap::Command, String, String)> = vec![(Cli::command(), "armorctl".into(), "armorctl".into())];
    let mut i = 0;
    while i < pages.len() {
        let (cmd, page, bin) = pages[i].clone();
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            pages.push((
                sub.clone(),
                format!("{page}-{}", sub.get_name()),
                format!("{bin} {}", sub.get_name()),
            ));
        }
        i += 1;
    }
    for (cmd, page, bin) in pages {
        write_man(cmd, &page, &bin, "1")?;
    }
    write_man(ArmordArgs::command(), "armord", "armord", "8")?;
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
