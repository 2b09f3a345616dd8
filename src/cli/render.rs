//! `armorctl render`: an allow-list spec as profile text.

use super::*;

pub(super) fn render(path: &std::path::Path) -> Result<i32, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::Io(path.to_owned(), e))?;
    match crate::spec::Spec::parse(&text) {
        Ok(spec) => {
            print!("{}", spec.render());
            Ok(0)
        }
        Err(e) => {
            eprintln!("armorctl: {}: {e}", crate::escape::path(path));
            Ok(2)
        }
    }
}
