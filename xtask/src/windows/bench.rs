//! `cargo xtask bench --windows`: the workloads of [`WORKLOADS`] of the benchmark binary built for
//! Windows and run under Wine, beside the same workloads on Linux. Information only: Wine is
//! not Windows (every Windows process is also a Wine loader, every handle a wineserver call).

use std::fmt::Write as _;
use std::time::Duration;

use super::wine;
use crate::{
    better, cargo_cmd, fmt_value, header, parse_figures, short_unit, supervise, Figures, Res,
};

/// The workloads run under Wine.
const WORKLOADS: &[&str] = &[
    "spawn_join",
    "pipe_rtt",
    "lock_uncontended",
    "queue_small",
    "apply_async_rtt",
    "map_chunk1",
    "manager_dict",
    "manager_remote",
];

/// How long one benchmark run may take.
const DEADLINE: Duration = Duration::from_secs(600);

pub fn bench(quick: bool) -> Res {
    wine::preflight()?;
    let packages = crate::cargo_json::metadata()?;
    let only = WORKLOADS.join(",");
    let mut args = vec!["--only", only.as_str()];
    if quick {
        args.push("--quick");
    }
    let built = super::build(
        &[
            "--release",
            "-p",
            "multiproc-benches",
            "--bin",
            "multiproc-bench",
        ],
        true,
        &packages,
    )?;
    let exe = built
        .artifacts
        .iter()
        .find(|a| a.target == "multiproc-bench" && a.kind == "bin")
        .map(|a| a.exe.clone())
        .ok_or("the benchmark binary did not build for Windows (the errors are above)")?;

    let mut linux = cargo_cmd(&["run", "--release", "-p", "multiproc-benches", "--"]);
    linux.args(&args);
    header(&crate::describe(&linux));
    let linux = supervise::run(linux, DEADLINE, true)?;
    if !linux.success() {
        return Err(format!(
            "the benchmarks failed on Linux ({})",
            linux.describe(DEADLINE)
        ));
    }

    let shim = wine::build_shim(&crate::target_dir())?;
    wine::place_shim(&shim, &exe)?;
    let prefix = wine::Prefix::create(&shim)?;
    let mut c = prefix.wine(&exe);
    c.args(&args);
    header(&format!("multiproc-bench {} under Wine", args.join(" ")));
    let under_wine = supervise::run(c, DEADLINE, true)?;
    drop(prefix);

    let table = render(
        &parse_figures(&linux.stdout),
        &parse_figures(&under_wine.stdout),
    );
    println!("\n{table}");
    println!("{} under Wine ({})", wine::TARGET, wine::version());
    if !under_wine.success() {
        return Err(format!(
            "the benchmarks failed under Wine ({}); the figures it printed are above",
            under_wine.describe(DEADLINE)
        ));
    }
    Ok(())
}

fn render(linux: &Figures, under_wine: &Figures) -> String {
    let mut out = String::from(
        "Windows under Wine vs Linux, same machine (information only: Wine is not Windows)\n",
    );
    let w = WORKLOADS.iter().map(|w| w.len()).max().unwrap_or(8).max(8);
    let _ = writeln!(
        out,
        "{:<w$}  {:<16}  {:>10}  {:>10}  {:>12}",
        "workload", "unit", "Linux", "Wine", "Wine slower"
    );
    for name in WORKLOADS {
        let (l, u) = (linux.get(*name), under_wine.get(*name));
        let unit = l.or(u).map_or("", |f| short_unit(&f.unit));
        let show = |f: Option<&crate::Figure>| f.map_or("-".to_string(), |f| fmt_value(f.value));
        // how many times slower Wine is (a time per thing grows, a rate shrinks)
        let slower = match (l, u) {
            (Some(l), Some(u)) => better(l, u).map_or("-".into(), |x| format!("{x:.1}x")),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "{name:<w$}  {unit:<16}  {:>10}  {:>10}  {slower:>12}",
            show(l),
            show(u)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowdowns_read_rates_and_times_the_right_way_round() {
        let figures = |text: &str| parse_figures(text);
        let linux =
            figures("pipe_rtt\t80\tus/round trip (64 B)\nmanager_dict\t60000\tproxy ops/s (x)\n");
        let wine =
            figures("pipe_rtt\t640\tus/round trip (64 B)\nmanager_dict\t1500\tproxy ops/s (x)\n");
        let table = render(&linux, &wine);
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no row {name}: {table}"))
                .to_string()
        };
        assert!(row("pipe_rtt").ends_with(" 8.0x"), "{table}");
        assert!(row("manager_dict").ends_with(" 40.0x"), "{table}");
        assert!(row("spawn_join").ends_with(" -"), "{table}");
    }
}
