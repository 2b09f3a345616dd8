//! The simulated kernel for `--simulate`.
//!
//! It keeps its loaded set in `<dir>/profiles`, in exactly the securityfs
//! format, reads confinement from `<dir>/proc/<pid>/attr/current`, and still
//! compiles every profile with the real parser when one is installed.

use super::{
    Kernel, KernelError, LoadOptions, Mode, NamesResult, Parser, ParserError, ParserRunner, ProcReader,
    declared_profiles, parse_profiles_file, top_level,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Debug)]
pub struct SimKernel {
    dir: PathBuf,
    /// The real parser, when installed.
    parser: Option<ParserRunner>,
    lock: Mutex<()>,
    /// Names the parser gave for each (content-addressed) file, so a load
    /// right after validation does not ask again.
    names_seen: Mutex<HashMap<PathBuf, Vec<String>>>,
    /// Files (content-addressed: a path is a content) the parser compiled
    /// with these options in this process: loading one is the kernel
    /// taking the policy that compile wrote, no second compile.
    compiled: Mutex<HashSet<(PathBuf, bool)>>,
}

impl SimKernel {
    pub fn new(dir: PathBuf, parser: Option<ParserRunner>) -> Self {
        SimKernel {
            dir,
            parser,
            lock: Mutex::new(()),
            names_seen: Mutex::new(HashMap::new()),
            compiled: Mutex::new(HashSet::new()),
        }
    }

    pub fn profiles_path(&self) -> PathBuf {
        self.dir.join("profiles")
    }

    pub fn proc_root(&self) -> PathBuf {
        self.dir.join("proc")
    }

    pub fn has_real_parser(&self) -> bool {
        self.parser.is_some()
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KernelError + '_ {
        move |source| KernelError::Io {
            path: path.to_owned(),
            source,
        }
    }

    fn read(&self) -> Result<BTreeMap<String, Mode>, KernelError> {
        let path = self.profiles_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_profiles_file(&path, &text),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Self::io(&path)(e)),
        }
    }

    fn write(&self, set: &BTreeMap<String, Mode>) -> Result<(), KernelError> {
        let path = self.profiles_path();
        std::fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let tmp = self.dir.join(".profiles.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(Self::io(&tmp))?;
        for (name, mode) in set {
            writeln!(f, "{name} ({mode})").map_err(Self::io(&tmp))?;
        }
        // Atomic, not durable: a real kernel forgets its profiles at a power
        // loss too, and a batch is written once per member.
        std::fs::rename(&tmp, &path).map_err(Self::io(&path))?;
        // The policy revision, as the kernel's `revision` file counts.
        let rev = self.dir.join("revision");
        let next = std::fs::read_to_string(&rev)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        std::fs::write(&rev, format!("{next}\n")).map_err(Self::io(&rev))
    }

    fn scan_names(files: &[PathBuf]) -> Vec<NamesResult> {
        files
            .iter()
            .map(|f| match std::fs::read_to_string(f) {
                Ok(text) => Ok(declared_profiles(&text).into_iter().map(|d| d.name).collect()),
                Err(e) => Err(ParserError::Output {
                    program: f.clone(),
                    message: e.to_string(),
                }),
            })
            .collect()
    }
}

impl Kernel for SimKernel {
    fn loaded(&self) -> Result<BTreeMap<String, Mode>, KernelError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.read()
    }

    fn remove(&self, name: &str) -> Result<(), KernelError> {
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut set = self.read()?;
        set.retain(|n, _| top_level(n) != name);
        self.write(&set)
    }

    fn confined(&self) -> Result<BTreeMap<String, Vec<u32>>, KernelError> {
        ProcReader { root: self.proc_root() }.confined()
    }

    fn revision(&self) -> Option<u64> {
        super::kernel::read_revision(&self.dir.join("revision"))
    }
}

impl Parser for SimKernel {
    fn checks(&self) -> bool {
        self.parser.is_some()
    }
    fn leaves_policy(&self) -> bool {
        self.parser.as_ref().is_some_and(|p| p.leaves_policy())
    }
    fn compiled(&self, file: &Path) -> Option<Vec<u8>> {
        self.parser.as_ref()?.compiled(file)
    }
    fn cached(&self, file: &Path) -> Option<Vec<u8>> {
        self.parser.as_ref()?.cached(file)
    }
    fn dump(&self, files: &[PathBuf]) -> Result<Vec<Option<Vec<u8>>>, ParserError> {
        match &self.parser {
            Some(p) => p.dump(files),
            None => Ok(vec![None; files.len()]),
        }
    }
    fn names(&self, files: &[PathBuf]) -> Result<Vec<NamesResult>, ParserError> {
        let result = match &self.parser {
            Some(p) => p.names(files)?,
            None => Self::scan_names(files),
        };
        let mut seen = self.names_seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 100_000 {
            seen.clear();
        }
        for (f, r) in files.iter().zip(&result) {
            if let Ok(names) = r {
                seen.insert(f.clone(), names.clone());
            }
        }
        Ok(result)
    }

    fn compile(&self, files: &[PathBuf], opts: LoadOptions) -> Result<(), ParserError> {
        let Some(p) = &self.parser else { return Ok(()) };
        p.compile(files, opts)?;
        let mut done = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if done.len() > 100_000 {
            done.clear();
        }
        done.extend(files.iter().map(|f| (f.clone(), opts.complain)));
        Ok(())
    }

    fn load(&self, files: &[PathBuf], opts: LoadOptions) -> Result<(), ParserError> {
        let uncompiled: Vec<PathBuf> = {
            let done = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
            files
                .iter()
                .filter(|f| !done.contains(&((*f).clone(), opts.complain)))
                .cloned()
                .collect()
        };
        if !uncompiled.is_empty() {
            self.compile(&uncompiled, opts)?;
        }
        // Names and modes from the compiled policy where the cache holds it;
        // else the names the parser gave, and a scan for the modes.
        let compiled: Vec<Option<Vec<super::CompiledProfile>>> = files
            .iter()
            .map(|f| self.cached(f).and_then(|b| super::read_policy(&b).ok()))
            .collect();
        let known: Vec<Option<Vec<String>>> = {
            let seen = self.names_seen.lock().unwrap_or_else(|p| p.into_inner());
            files
                .iter()
                .zip(&compiled)
                .map(|(f, c)| match c {
                    Some(c) => Some(c.iter().map(|p| p.name.clone()).collect()),
                    None => seen.get(f).cloned(),
                })
                .collect()
        };
        let names = if known.iter().all(Option::is_some) {
            known.into_iter().map(|n| Ok(n.unwrap_or_default())).collect()
        } else {
            self.names(files)?
        };
        let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut set = self.read().map_err(|e| ParserError::Output {
            program: self.profiles_path(),
            message: e.to_string(),
        })?;
        for (i, (file, names)) in files.iter().zip(names).enumerate() {
            let names = names?;
            if i > 0 {
                // The kernel takes a batch one profile at a time.
                self.write(&set).map_err(|e| ParserError::Output {
                    program: self.profiles_path(),
                    message: e.to_string(),
                })?;
                let _ = crate::failpoint::hit("between-members");
            }
            // The kernel takes the modes the compile wrote; a scan stands
            // in where there is no compiled policy.
            let compiled = compiled[i]
                .as_ref()
                .filter(|p| p.iter().map(|p| &p.name).eq(names.iter()));
            let declared = std::fs::read_to_string(file)
                .map(|t| declared_profiles(&t))
                .unwrap_or_default();
            for (j, name) in names.into_iter().enumerate() {
                let mode = if opts.complain {
                    Mode::Complain
                } else if let Some(p) = compiled {
                    p[j].mode.clone()
                } else {
                    declared
                        .iter()
                        .find(|d| d.name == top_level(&name))
                        .map_or(Mode::Enforce, |d| d.mode.clone())
                };
                set.insert(name, mode);
            }
        }
        self.write(&set).map_err(|e| ParserError::Output {
            program: self.profiles_path(),
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_and_remove_without_a_parser() {
        let t = tempfile::tempdir().unwrap();
        let k = SimKernel::new(t.path().join("sim"), None);
        let f = t.path().join("p");
        std::fs::write(&f, "profile custom.a flags=(complain) { }\nprofile custom.b { }\n").unwrap();
        k.load(std::slice::from_ref(&f), LoadOptions::default()).unwrap();
        assert_eq!(
            std::fs::read_to_string(k.profiles_path()).unwrap(),
            "custom.a (complain)\ncustom.b (enforce)\n"
        );
        k.load(&[f], LoadOptions { complain: true }).unwrap();
        assert_eq!(k.loaded().unwrap()["custom.b"], "complain");
        k.remove("custom.a").unwrap();
        assert_eq!(k.loaded().unwrap().keys().collect::<Vec<_>>(), ["custom.b"]);
    }
}
