//! The Wine side of the Windows harness: what must be installed, the `ProcessPrng` shim, and a
//! throw-away `WINEPREFIX` that every Windows program of one xtask run shares.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cmd, header, output, Res};

/// The target the Windows programs are built for.
pub const TARGET: &str = "x86_64-pc-windows-gnu";

/// Its linker, Debian's `gcc-mingw-w64-x86-64`; also the compiler of the shim.
pub const MINGW_GCC: &str = "x86_64-w64-mingw32-gcc";

/// The environment variable that hands cargo the linker (for the child cargo only).
pub const LINKER_ENV: &str = "CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER";

/// Rust's std (1.78 and later) takes its random bytes from `ProcessPrng` in
/// `bcryptprimitives.dll`, which Wine 8 does not have: without this DLL no Rust program starts
/// (`STATUS_DLL_NOT_FOUND`). It forwards to `SystemFunction036` (`RtlGenRandom`, advapi32),
/// which Wine has. For the Wine runs only: real Windows (10 and later) has the real DLL.
const SHIM_C: &str = r#"/* Written by `cargo xtask test --windows` (xtask/src/windows/wine.rs). */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!SystemFunction036(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
"#;

const SHIM_DEF: &str = "LIBRARY bcryptprimitives\nEXPORTS\nProcessPrng\n";

/// The shim's file name: what the loader looks for.
pub const SHIM_DLL: &str = "bcryptprimitives.dll";

/// How long the wineserver outlives the last Windows program (`wineserver -p<seconds>`).
const SERVER_LINGER: Duration = Duration::from_secs(60);

/// How long `wineboot` may take to make a prefix (about 20 s on two cores).
const BOOT_DEADLINE: Duration = Duration::from_secs(240);

fn runs(program: &str, arg: &str) -> bool {
    cmd(program, &[arg])
        .env("WINEDEBUG", "-all")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Check up front that Wine, the mingw compiler and the rustup target are there; the error
/// says what installs the missing ones.
pub fn preflight() -> Res {
    let mut missing = Vec::new();
    if !runs("wine", "--version") {
        missing.push(
            "`wine` (Wine 8 or later): sudo apt-get install wine wine64 (Debian's `wine` \
             package has the launcher, `wine64` the 64-bit loader)",
        );
    }
    if !runs("wineserver", "--version") {
        missing.push("`wineserver`: sudo apt-get install wine64");
    }
    if !runs(MINGW_GCC, "--version") {
        missing.push(
            "`x86_64-w64-mingw32-gcc` (linker and shim compiler): sudo apt-get install \
             gcc-mingw-w64-x86-64",
        );
    }
    let installed = output(cmd("rustup", &["target", "list", "--installed"])).unwrap_or_default();
    if !installed.lines().any(|l| l.trim() == TARGET) {
        missing
            .push("the Rust target x86_64-pc-windows-gnu: rustup target add x86_64-pc-windows-gnu");
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the Windows tests run under Wine and need:\n  - {}\n(.ci/run installs all of them)",
        missing.join("\n  - ")
    ))
}

/// `wine --version`, for the summary ("wine-8.0 (Debian 8.0~repack-4)").
pub fn version() -> String {
    let mut c = cmd("wine", &["--version"]);
    c.env("WINEDEBUG", "-all").stderr(Stdio::null());
    output(c)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "wine".into())
}

/// Compile the shim into `<target>/x86_64-pc-windows-gnu/wine-shim/` (again only when this
/// source changed) and return the DLL's path.
pub fn build_shim(target_dir: &Path) -> Res<PathBuf> {
    let dir = target_dir.join(TARGET).join("wine-shim");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let dll = dir.join(SHIM_DLL);
    let c = dir.join("bcryptprimitives.c");
    let def = dir.join("bcryptprimitives.def");
    let same = |p: &Path, text: &str| std::fs::read_to_string(p).is_ok_and(|t| t == text);
    if dll.is_file() && same(&c, SHIM_C) && same(&def, SHIM_DEF) {
        return Ok(dll);
    }
    for (p, text) in [(&c, SHIM_C), (&def, SHIM_DEF)] {
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    header(&format!(
        "{MINGW_GCC}: the ProcessPrng shim ({SHIM_DLL}) for Wine"
    ));
    let status = Command::new(MINGW_GCC)
        .args(["-shared", "-O2", "-Wall", "-o"])
        .arg(&dll)
        .arg(&c)
        .arg(&def)
        .arg("-ladvapi32")
        .status()
        .map_err(|e| format!("could not run {MINGW_GCC}: {e}"))?;
    if !status.success() {
        let _ = std::fs::remove_file(&dll);
        return Err(format!("{MINGW_GCC} could not build the shim ({status})"));
    }
    Ok(dll)
}

/// Put the shim beside `exe`, where the loader looks first (so the exe also runs by hand under
/// any prefix). Skipped when an identical copy is there.
pub fn place_shim(shim: &Path, exe: &Path) -> Res {
    let dir = exe.parent().ok_or("an executable without a directory")?;
    let to = dir.join(SHIM_DLL);
    if std::fs::read(&to).ok() == std::fs::read(shim).ok() && to.is_file() {
        return Ok(());
    }
    std::fs::copy(shim, &to)
        .map(|_| ())
        .map_err(|e| format!("copying the shim to {}: {e}", to.display()))
}

/// A throw-away `WINEPREFIX` in a temporary directory: made by [`Prefix::create`], its
/// wineserver stopped and the directory removed on drop.
pub struct Prefix {
    /// The temporary directory; the prefix is its `prefix/`.
    dir: PathBuf,
    prefix: PathBuf,
    /// How long `wineboot` took.
    pub boot_time: Duration,
}

impl Prefix {
    /// Make the prefix (`wineboot -i`), put the shim into its `system32` and start a persistent
    /// wineserver.
    ///
    /// The shim goes into `system32` besides sitting next to each test binary, because tests
    /// copy their own executable elsewhere and run the copy (`multiproc-pickle`'s other-build
    /// tests): on Windows the DLL is a system DLL found from anywhere, and so it is here.
    pub fn create(shim: &Path) -> Res<Prefix> {
        let dir = std::env::temp_dir().join(format!("multiproc-wine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let prefix = dir.join("prefix");
        // An empty directory of ours: `wineboot -i` fills it.
        std::fs::create_dir_all(&prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;
        let mut p = Prefix {
            prefix,
            dir,
            boot_time: Duration::ZERO,
        };
        header(&format!(
            "WINEPREFIX={} wineboot -i (a throw-away Wine prefix)",
            p.prefix.display()
        ));
        let t = Instant::now();
        // The server first, then the boot, all without our output: the processes they leave
        // running (services.exe and its helpers) must not hold a test's output pipe.
        p.boot(true)?;
        p.boot_time = t.elapsed();
        let system32 = p.prefix.join("drive_c/windows/system32");
        std::fs::copy(shim, system32.join(SHIM_DLL))
            .map_err(|e| format!("copying the shim into {}: {e}", system32.display()))?;
        println!("Wine prefix ready in {:.1} s", p.boot_time.as_secs_f64());
        Ok(p)
    }

    /// `program` with this prefix's environment: `WINEPREFIX`, `WINEDEBUG=-all` (Wine's own
    /// diagnostics off), `WINEDLLOVERRIDES` that keep Wine from offering to install Mono and
    /// Gecko (no Windows program here needs .NET or a browser), and `REDIS_SERVER`, the Linux
    /// `redis-server` (a Windows program under Wine can start it; the pool's Redis suite does).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.current_dir(crate::root())
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env_remove("DISPLAY");
        if let Some(redis) = on_path("redis-server") {
            c.env("REDIS_SERVER", redis);
        }
        c
    }

    /// `wine exe args...`.
    pub fn wine(&self, exe: &Path) -> Command {
        let mut c = self.command("wine");
        c.arg(exe);
        c
    }

    /// A wineserver that stays up between the runs, started here with no inherited output, so
    /// that no test's output pipe is held by it. It lives on for [`SERVER_LINGER`] after the
    /// last Windows program ends (the runs follow each other closely), so even an xtask
    /// killed before its clean-up leaves no server running for long.
    fn start_server(&self) -> Res {
        let status = self
            .command("wineserver")
            .arg(format!("-p{}", SERVER_LINGER.as_secs()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| format!("could not run wineserver: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("wineserver -p failed ({status})"))
        }
    }

    /// Start the server, then `wineboot` (`-i`: make the prefix), both without our output:
    /// the processes they leave running (services.exe and its helpers, explorer.exe) must not
    /// hold a test's output pipe, as they would if a test's run started them.
    fn boot(&self, init: bool) -> Res {
        self.start_server()?;
        let mut boot = self.command("wineboot");
        if init {
            boot.arg("-i");
        }
        boot.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        crate::run_with_deadline(boot, BOOT_DEADLINE).map_err(|e| format!("wineboot: {e}"))
    }

    /// Kill every process of the prefix (`wineserver -k`) and boot it again: after a program
    /// was killed at its deadline, its Windows children may live on outside its Unix process
    /// group.
    pub fn kill_all(&self) -> Res {
        self.stop();
        self.boot(false)
    }

    fn stop(&self) {
        let _ = self
            .command("wineserver")
            .arg("-k")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // `-w`: until the server is gone, so the next start finds no half-dead one.
        let _ = self
            .command("wineserver")
            .arg("-w")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        self.stop();
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!(
                "xtask: warning: could not remove the Wine prefix {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// Where `name` is on the `PATH`, if anywhere.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
