//! Builds whose executables the xtask runs itself: `cargo build --message-format=json`, read
//! for the paths of the executables and for the targets that failed to compile, and `cargo
//! metadata` for the packages' targets.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::json::Json;
use crate::{describe, Res};

/// One target of a package, from `cargo metadata`.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// `lib`, `test`, `bin`, ... (cargo's first kind).
    pub kind: String,
    /// Built as a test harness by `cargo build --tests` (the `test` flag of the manifest).
    pub test: bool,
}

/// One workspace package, from `cargo metadata`.
#[derive(Debug, Clone)]
pub struct Package {
    pub id: String,
    pub name: String,
    pub manifest_path: PathBuf,
    pub targets: Vec<Target>,
}

/// The workspace's packages.
pub fn metadata() -> Res<Vec<Package>> {
    let mut c = crate::cargo_cmd(&["metadata", "--no-deps", "--format-version", "1"]);
    c.stderr(Stdio::inherit());
    let text = crate::output(c)?;
    let v = Json::parse(&text).map_err(|e| format!("cargo metadata: {e}"))?;
    let mut out = Vec::new();
    for p in v
        .get("packages")
        .and_then(Json::as_array)
        .unwrap_or_default()
    {
        let s = |k: &str| {
            p.get(k)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let targets = p
            .get("targets")
            .and_then(Json::as_array)
            .unwrap_or_default()
            .iter()
            .map(|t| Target {
                name: t
                    .get("name")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
                kind: t
                    .get("kind")
                    .and_then(Json::as_array)
                    .and_then(|k| k.first())
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string(),
                test: t.get("test").and_then(Json::as_bool).unwrap_or(false),
            })
            .collect();
        out.push(Package {
            id: s("id"),
            name: s("name"),
            manifest_path: PathBuf::from(s("manifest_path")),
            targets,
        });
    }
    Ok(out)
}

/// An executable a build made.
#[derive(Debug, Clone)]
pub struct Artifact {
    pub package: String,
    pub target: String,
    /// `lib` for a library's unit-test harness, `test`, `bin`, ...
    pub kind: String,
    pub exe: PathBuf,
}

/// What a build made, and which targets failed.
#[derive(Debug, Default)]
pub struct Built {
    pub artifacts: Vec<Artifact>,
    /// `(package, target)` of each target with a compile error.
    pub failed: Vec<(String, String)>,
    pub success: bool,
}

/// Run `c` (a `cargo build ... --message-format=json`) and read its messages; compiler
/// diagnostics are printed to standard error as cargo would. A failed build is not an error
/// here: `Built::failed` says what did not build.
pub fn build(mut c: Command, packages: &[Package]) -> Res<Built> {
    let what = describe(&c);
    let names: HashMap<&str, &str> = packages
        .iter()
        .map(|p| (p.id.as_str(), p.name.as_str()))
        .collect();
    c.stdout(Stdio::piped()).stdin(Stdio::null());
    let mut child = c
        .spawn()
        .map_err(|e| format!("could not run `{what}`: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut built = Built::default();
    let mut finished = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading `{what}`: {e}"))?;
        let Ok(m) = Json::parse(&line) else {
            // A build script's or a tool's own line: cargo passes it through.
            println!("{line}");
            continue;
        };
        let package = || {
            let id = m
                .get("package_id")
                .and_then(Json::as_str)
                .unwrap_or_default();
            names.get(id).copied().unwrap_or(id).to_string()
        };
        let target = || {
            m.at(&["target", "name"])
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match m.get("reason").and_then(Json::as_str) {
            Some("compiler-message") => {
                if let Some(r) = m.at(&["message", "rendered"]).and_then(Json::as_str) {
                    eprint!("{r}");
                }
                if m.at(&["message", "level"]).and_then(Json::as_str) == Some("error") {
                    let key = (package(), target());
                    if !built.failed.contains(&key) {
                        built.failed.push(key);
                    }
                }
            }
            Some("compiler-artifact") => {
                if let Some(exe) = m.get("executable").and_then(Json::as_str) {
                    let kind = m
                        .at(&["target", "kind"])
                        .and_then(Json::as_array)
                        .and_then(|k| k.first())
                        .and_then(Json::as_str)
                        .unwrap_or_default()
                        .to_string();
                    built.artifacts.push(Artifact {
                        package: package(),
                        target: target(),
                        kind,
                        exe: PathBuf::from(exe),
                    });
                }
            }
            Some("build-finished") => {
                finished = m.get("success").and_then(Json::as_bool);
            }
            _ => {}
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for `{what}`: {e}"))?;
    built.success = status.success() && finished == Some(true);
    Ok(built)
}

/// The names of the `[[test]]` targets of a manifest that set `harness = false`: they are
/// programs of their own, which take none of libtest's arguments (`--list`, `--skip`).
pub fn harnessless_tests(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_test = false;
    let (mut name, mut harness) = (None::<String>, true);
    let mut flush = |name: &mut Option<String>, harness: &mut bool| {
        if let (Some(n), false) = (name.take(), *harness) {
            out.push(n);
        }
        *harness = true;
    };
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.starts_with('[') {
            if in_test {
                flush(&mut name, &mut harness);
            }
            in_test = line == "[[test]]";
            continue;
        }
        if !in_test {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            match k.trim() {
                "name" => name = Some(v.trim().trim_matches('"').to_string()),
                "harness" => harness = v.trim() != "false",
                _ => {}
            }
        }
    }
    if in_test {
        flush(&mut name, &mut harness);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::harnessless_tests;

    #[test]
    fn harnessless_tests_are_found() {
        let manifest = r#"
[package]
name = "x"
harness = false

[[test]]
name = "no_init"
harness = false # its own main

[[test]]
name = "normal"

[[test]]
harness = false
name = "last"
"#;
        assert_eq!(harnessless_tests(manifest), ["no_init", "last"]);
    }
}
