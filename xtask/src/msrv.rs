//! The MSRV step of `cargo xtask ci`: build the published crates with the toolchain that
//! `rust-version` in the workspace `Cargo.toml` names, so that number stays true.
//!
//! It checks the libraries with their normal dependencies, as a user's build compiles them.
//! Their tests, benches and this xtask need a newer toolchain (`trybuild` and the bench
//! comparisons require one), so they are left out: the check builds a scratch package in
//! `target/msrv/` that depends on the facade by path, whose dev-dependencies cargo then
//! ignores. The workspace lock file is copied in, so it checks the versions CI tests.

use std::path::Path;
use std::process::Command;

use crate::{cmd, header, output, run, Res};

/// `rust-version = "x.y"` from the `[workspace.package]` table of `manifest`.
pub fn rust_version(manifest: &str) -> Option<String> {
    let mut in_table = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_table = line == "[workspace.package]";
            continue;
        }
        if !in_table {
            continue;
        }
        if let Some(rest) = line.strip_prefix("rust-version") {
            let value = rest.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_string());
        }
    }
    None
}

const SCRATCH_MANIFEST: &str = r#"# Written by `cargo xtask ci` (xtask/src/msrv.rs): the published crates, as a user builds them.
[package]
name = "msrv-check"
version = "0.0.0"
edition = "2021"
publish = false

[workspace]

[dependencies]
multiproc = { path = "../../crates/multiproc", features = ["progress-bar"] }
"#;

/// Install the MSRV toolchain if needed and `cargo +MSRV check` the published crates.
///
/// Skips, with a loud reason, only when rustup itself cannot install the toolchain (a machine
/// that cannot download one); a build error on the MSRV fails.
pub fn check(root: &Path) -> Res {
    let manifest =
        std::fs::read_to_string(root.join("Cargo.toml")).map_err(|e| format!("Cargo.toml: {e}"))?;
    let msrv =
        rust_version(&manifest).ok_or("no rust-version in [workspace.package] of Cargo.toml")?;
    header(&format!("MSRV: the published crates on Rust {msrv}"));
    let installed = output(cmd("rustup", &["toolchain", "list"]))?;
    if !installed
        .lines()
        .any(|l| l.starts_with(&format!("{msrv}-")))
    {
        let install = cmd(
            "rustup",
            &["toolchain", "install", &msrv, "--profile", "minimal"],
        );
        if let Err(e) = run(install) {
            println!(
                "\n!!!!!!!! MSRV CHECK SKIPPED: rustup could not install Rust {msrv} ({e}).\n\
                 !!!!!!!! rust-version = \"{msrv}\" is NOT verified on this machine.\n"
            );
            return Ok(());
        }
    }
    let scratch = root.join("target").join("msrv");
    std::fs::create_dir_all(scratch.join("src")).map_err(|e| format!("target/msrv: {e}"))?;
    let write = |name: &str, text: &str| {
        std::fs::write(scratch.join(name), text).map_err(|e| format!("target/msrv/{name}: {e}"))
    };
    write("Cargo.toml", SCRATCH_MANIFEST)?;
    write(
        "src/lib.rs",
        "//! Empty: only the dependencies are checked.\n",
    )?;
    let lock =
        std::fs::read_to_string(root.join("Cargo.lock")).map_err(|e| format!("Cargo.lock: {e}"))?;
    write("Cargo.lock", &lock)?;
    // Through rustup's proxy, not `$CARGO` (which is the toolchain running us).
    let mut c = Command::new("cargo");
    c.arg(format!("+{msrv}"))
        .args(["check", "--all-targets"])
        .current_dir(&scratch)
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("CARGO_TARGET_DIR", scratch.join("target"));
    run(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_workspace_rust_version() {
        let m = "[package]\nrust-version = \"1.60\"\n[workspace.package]\nversion = \"0.1.0\"\n\
                 rust-version = \"1.82\"\n[workspace.dependencies]\nrust-version = \"9\"\n";
        assert_eq!(rust_version(m).as_deref(), Some("1.82"));
        assert_eq!(rust_version("[workspace.package]\nversion = \"1\"\n"), None);
    }

    #[test]
    fn the_workspace_names_one() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let m = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let v = rust_version(&m).expect("rust-version in [workspace.package]");
        assert!(v.split('.').all(|p| p.parse::<u32>().is_ok()), "{v}");
    }
}
