//! The doc-path check of `cargo xtask ci`: every example in the docs of a crate the facade
//! re-exports must compile with only `multiproc` as a dependency, so it may not name a member
//! crate (`multiproc_shm::...`) directly. A user reads these docs through the facade.

use std::path::{Path, PathBuf};

/// One example line that names a member crate.
#[derive(Debug, PartialEq, Eq)]
pub struct Offence {
    /// Line number, from 1.
    pub line: usize,
    /// The line as written.
    pub text: String,
}

/// The lines of the doc examples in `source` (a Rust file) that name a `multiproc_*` crate.
///
/// A doc example is the text between two fences (```` ``` ````) in a run of `///` or `//!`
/// comments; a fence closes at the end of a run, as rustdoc does.
pub fn offences(source: &str) -> Vec<Offence> {
    let mut out = Vec::new();
    let mut in_example = false;
    for (i, line) in source.lines().enumerate() {
        let trimmed = line.trim_start();
        let doc = trimmed
            .strip_prefix("///")
            .or_else(|| trimmed.strip_prefix("//!"));
        let Some(doc) = doc else {
            in_example = false;
            continue;
        };
        if doc.trim_start().starts_with("```") {
            in_example = !in_example;
            continue;
        }
        if in_example && names_member_crate(doc) {
            out.push(Offence {
                line: i + 1,
                text: line.trim().to_string(),
            });
        }
    }
    out
}

/// Whether `text` holds a path into a member crate: `multiproc_` followed by a lowercase name
/// and `::` (or a `use multiproc_x;` / `extern crate`).
fn names_member_crate(text: &str) -> bool {
    let mut rest = text;
    while let Some(at) = rest.find("multiproc_") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "multiproc_".len()..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        let tail = &after[name_len..];
        let ident_start = !before.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if ident_start && name_len > 0 && (tail.starts_with("::") || tail.starts_with(';')) {
            return true;
        }
        rest = after;
    }
    false
}

/// Every `.rs` file under `dir`, recursively, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if e.file_type()?.is_dir() {
            rust_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    Ok(())
}

/// Check the sources of every crate under `root/crates`; `Err` lists each offending line.
pub fn check(root: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    let crates = root.join("crates");
    for krate in std::fs::read_dir(&crates).map_err(|e| format!("{}: {e}", crates.display()))? {
        let src = krate.map_err(|e| e.to_string())?.path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files).map_err(|e| format!("{}: {e}", src.display()))?;
        }
    }
    let mut report = String::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        for o in offences(&text) {
            let rel = f.strip_prefix(root).unwrap_or(f);
            report.push_str(&format!("  {}:{}: {}\n", rel.display(), o.line, o.text));
        }
    }
    if report.is_empty() {
        println!(
            "doc examples name only `multiproc::` paths ({} files)",
            files.len()
        );
        Ok(())
    } else {
        Err(format!(
            "doc examples must use the facade's paths (`multiproc::...`), not a member crate's:\n\
             {report}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_crate_path_in_an_example_is_caught() {
        let src = "/// Text about multiproc_shm::Value is fine.\n\
                   ///\n\
                   /// ```\n\
                   /// let v = multiproc_shm::Value::new(1i64);\n\
                   /// use multiproc::Value;\n\
                   /// ```\n\
                   fn f() {}\n\
                   //! ```no_run\n\
                   //! use multiproc_pool::{Pool};\n\
                   //! ```\n";
        let got = offences(src);
        let lines: Vec<usize> = got.iter().map(|o| o.line).collect();
        assert_eq!(lines, vec![4, 9]);
    }

    #[test]
    fn facade_paths_and_prose_pass() {
        let src = "/// See [`multiproc_shm::Value`].\n\
                   /// ```\n\
                   /// let v = multiproc::shm::Value::new(1i64);\n\
                   /// let my_multiproc_x = 1; // not_multiproc_shm::X\n\
                   /// ```\n";
        assert_eq!(offences(src), vec![]);
    }

    #[test]
    fn a_fence_left_open_closes_at_the_end_of_the_comment() {
        let src = "/// ```\n/// let a = 1;\nfn f() {}\nconst X: &str = \"multiproc_shm::Y\";\n";
        assert_eq!(offences(src), vec![]);
    }

    #[test]
    fn the_workspace_passes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        check(root).unwrap();
    }
}
