//! `armorctl render`: allow-list specs as profile text.

use super::*;

pub(super) fn render(paths: &[PathBuf]) -> Result<i32, CliError> {
    let mut code = 0;
    for (i, path) in paths.iter().enumerate() {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("armorctl: {}", CliError::Io(path.clone(), e));
                code = 2;
                continue;
            }
        };
        match crate::spec::Spec::parse(&text) {
            Ok(spec) => {
                if i > 0 {
                    outln!();
                }
                out!("{}", spec.render());
            }
            Err(e) => {
                eprintln!("armorctl: {}", e.with_file(path));
                code = 2;
            }
        }
    }
    Ok(code)
}
