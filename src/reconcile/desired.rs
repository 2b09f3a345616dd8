//! What the sources want, from what a read found: refusals as they are,
//! allow-list specs rendered to the profiles they stand for.

use super::*;

/// Files refused before the parser, as the sources want them: never
/// loaded; a text read but refused for its bytes still protects the names
/// it may define.
pub(super) fn push_refusals(
    refused: Vec<source::Refusal>,
    src: &Arc<Path>,
    files: &mut Vec<DesiredFile>,
    may_define: &mut BTreeMap<PathBuf, Vec<String>>,
) {
    for r in refused {
        if let Some(text) = &r.text {
            may_define.insert(r.path.clone(), super::validate::may_define_of(&r.path, text));
        }
        files.push(DesiredFile {
            path: r.path.into(),
            source: src.clone(),
            sha256: Default::default(),
            verdict: Verdict::Refused { reason: r.reason },
        });
    }
}

/// Turn allow-list specs (`*.allow.toml`) into the profiles they render to;
/// a bad spec is refused with the key and the reason.
pub fn render_specs(
    files: Vec<(source::SourceFile, Arc<Path>)>,
    refused: &mut Vec<DesiredFile>,
    may_define: &mut BTreeMap<PathBuf, Vec<String>>,
) -> Vec<(source::SourceFile, Arc<Path>)> {
    files
        .into_iter()
        .filter_map(|(f, src)| {
            let is_spec = f
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(crate::spec::is_spec);
            if !is_spec {
                return Some((f, src));
            }
            let rendered = super::validate::contained(&f.path, || {
                Ok(crate::spec::Spec::parse(&f.content).map(|spec| spec.render()))
            });
            let rendered = match rendered {
                Ok(r) => r,
                Err(reason) => {
                    refused.push(DesiredFile {
                        path: f.path,
                        source: src,
                        sha256: f.sha256,
                        verdict: Verdict::Refused { reason },
                    });
                    return None;
                }
            };
            match rendered {
                Ok(content) => Some((
                    source::SourceFile {
                        path: f.path,
                        sha256: crate::sha::Sha::of(content.as_bytes()),
                        content: content.into(),
                    },
                    src,
                )),
                Err(e) => {
                    // The name a broken spec may give its profile stays
                    // protected (none found: every profile of its source).
                    may_define.insert(
                        f.path.to_path_buf(),
                        super::validate::contained(&f.path, || Ok(crate::spec::names_a_spec_may_define(&f.content)))
                            .unwrap_or_default(),
                    );
                    // A TOML syntax error is where it is, like a parser
                    // error: `file:line: message`.
                    let verdict = match e.line {
                        Some(line) if e.key.is_empty() => Verdict::Invalid {
                            diagnostics: vec![crate::apparmor::Diagnostic {
                                file: None,
                                line: Some(line),
                                message: e.reason,
                            }],
                        },
                        _ => Verdict::Refused { reason: e.to_string() },
                    };
                    refused.push(DesiredFile {
                        path: f.path,
                        source: src,
                        sha256: f.sha256,
                        verdict,
                    });
                    None
                }
            }
        })
        .collect()
}
