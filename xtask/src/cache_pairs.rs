//! The report's cache chart: the fixtures' layouts in pairs that do the
//! same work (fixtures/c/locality.c's modes, fixtures/c/bulk_vs_single.c),
//! as misses per element.
//!
//! Each side runs twice under `memtrace cache --format json`, at [`N`]
//! elements and at [`N_BASE`], and `memtrace_cache::compare` charts the
//! difference per element. Each side is a run of its own rather than a
//! phase of `locality all`: without hardware counters the misses come from
//! cachegrind, which counts a whole run, not a phase.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use memtrace_cache::compare::{self, Misses, Pair, Side};
use memtrace_plot::page::Figure;

use crate::util::{self, Paths};

/// Elements of every measured run.
pub const N: u64 = 20_000;
/// Elements of the baseline runs, whose misses are subtracted.
pub const N_BASE: u64 = 2;

/// Which fixture a pair runs.
#[derive(Clone, Copy)]
enum Program {
    Locality,
    BulkVsSingle,
}

/// One pair: its name and its sides as `(label, mode)`.
struct PairPlan {
    name: &'static str,
    program: Program,
    sides: [(&'static str, &'static str); 2],
}

const PAIRS: [PairPlan; 4] = [
    PairPlan {
        name: "list vs array",
        program: Program::Locality,
        sides: [("list", "list"), ("array", "array")],
    },
    PairPlan {
        name: "AoS vs SoA",
        program: Program::Locality,
        sides: [("aos", "aos"), ("soa", "soa")],
    },
    PairPlan {
        name: "scattered vs bulk",
        program: Program::Locality,
        sides: [("scattered", "scattered"), ("bulk", "bulk")],
    },
    PairPlan {
        name: "bulk_vs_single.c",
        program: Program::BulkVsSingle,
        sides: [("single", "single"), ("bulk", "bulk")],
    },
];

/// Draws `charts/cache.svg` (a placeholder that says why when a run fails)
/// and returns its figure and file.
pub fn draw(
    paths: &Paths,
    dir: &Path,
    title: &str,
    skipped: &mut Vec<(String, String)>,
) -> Result<(Figure, std::path::PathBuf)> {
    let locality = util::compile(paths, "cc", &["-O2", "-g"], "c/locality.c", "locality")?;
    let bvs = util::compile(
        paths,
        "cc",
        &["-O2", "-g"],
        "c/bulk_vs_single.c",
        "bulk_vs_single",
    )?;
    let path = dir.join("cache.svg");
    let title = format!("{title}: {N} elements");
    let svg = match measure_pairs(paths, &locality, &bvs) {
        Ok(pairs) => {
            let chart = compare::chart(&title, &pairs).map_err(anyhow::Error::msg)?;
            for side in pairs.iter().flat_map(|p| &p.sides) {
                let (d1, ll) = side.per_element();
                eprintln!(
                    "xtask: cache {}: {d1:.3} D1 and {ll:.3} LL misses per element",
                    side.label
                );
            }
            memtrace_plot::bars(&chart)
        }
        Err(reason) => {
            let reason = format!("{reason:#}");
            eprintln!("xtask: cache chart skipped: {reason}");
            skipped.push(("cache".into(), reason.clone()));
            memtrace_plot::skipped(&title, &reason)
        }
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    memtrace_safe_write::write_file(&path, svg.as_bytes())?;
    let memtrace = super::charts::memtrace_as_run(paths);
    let command = format!(
        "for m in list array aos soa scattered bulk; do for n in {N} {N_BASE}; do \
         {memtrace} cache --format json -- {} $m $n; done; done; and the same for \
         {} single|bulk",
        super::charts::rel(&paths.report, &locality),
        super::charts::rel(&paths.report, &bvs),
    );
    let figure = Figure {
        file: super::charts::rel(&paths.report, &path),
        title,
        caption: String::new(),
        command,
    };
    Ok((figure, path))
}

/// Runs every side at [`N`] and [`N_BASE`] elements.
fn measure_pairs(paths: &Paths, locality: &Path, bvs: &Path) -> Result<Vec<Pair>> {
    PAIRS
        .iter()
        .map(|plan| {
            let program = match plan.program {
                Program::Locality => locality,
                Program::BulkVsSingle => bvs,
            };
            let sides = plan
                .sides
                .iter()
                .map(|&(label, mode)| {
                    Ok(Side {
                        label: label.into(),
                        misses: misses(paths, program, mode, N)?,
                        n: N,
                        base: misses(paths, program, mode, N_BASE)?,
                        n_base: N_BASE,
                    })
                })
                .collect::<Result<Vec<Side>>>()?;
            Ok(Pair {
                name: plan.name.into(),
                sides,
            })
        })
        .collect()
}

/// `memtrace cache --format json -- PROGRAM MODE N`: its misses.
fn misses(paths: &Paths, program: &Path, mode: &str, n: u64) -> Result<Misses> {
    let mut cmd = Command::new(&paths.memtrace);
    cmd.args(["cache", "--format", "json", "--"])
        .arg(program)
        .args([mode, &n.to_string()]);
    eprintln!("xtask: {}", util::show(&cmd));
    let run = util::measure(&mut cmd)?;
    if !run.status.success() {
        anyhow::bail!("{}", super::charts::tool_error(&run.stderr));
    }
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .with_context(|| format!("`{}` printed invalid JSON", util::show(&cmd)))?;
    Misses::of_report(&doc).map_err(anyhow::Error::msg)
}
