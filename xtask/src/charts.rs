//! The charts of `cargo xtask report` and the page that shows them.
//!
//! [`CHARTS`] is the whole plan: one entry per chart of issue #9, saying
//! which fixtures it is drawn for and where it comes from. Charts of
//! `memtrace plot` are drawn by [`plot_fixture`], which runs `memtrace plot
//! TRACE -o charts/FIXTURE --only ... --data .` once per fixture, so the
//! report's charts are exactly what a user gets for their own trace, and
//! the same reading of the trace writes the fixture's report, latency and
//! frag files (the trace is decoded once instead of once per command).
//! The cache and swap charts
//! come from `memtrace cache --svg` and `memtrace swap --svg` on their own
//! fixtures (locality.c, walker.c), which are programs, not traces. A chart
//! whose tool cannot run here says why in its own `skipped: ...` image.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use memtrace_plot::page::{Figure, Section};

use crate::util::{self, Paths};

/// Where a chart comes from.
pub enum Source {
    /// `memtrace plot --only NAME`, writing `charts/FIXTURE/NAME.svg`.
    Plot(&'static str),
    /// `memtrace swap --svg charts/swap.svg -- walker anon 64 2`: the swap
    /// monitor's timeline of the working-set walker (the control: it fits),
    /// and as root the walker of 256 MiB under a 64 MiB cgroup limit with a
    /// temporary swap file (`charts/swap-limited.svg`).
    Swap,
    /// `memtrace cache --format json` on each side of the layout pairs
    /// (`cache_pairs`), charted per element as `charts/cache.svg`; and
    /// `memtrace cache --svg charts/cache-functions.svg -- locality all
    /// 20000`, the per-function view of one run.
    Cache,
}

/// One chart of the report.
pub struct ChartPlan {
    /// Heading on the page.
    pub title: &'static str,
    /// What it shows, one or two sentences.
    pub caption: &'static str,
    /// Fixtures it is drawn for (by `Fixture::name`; ignored for placeholders).
    pub fixtures: &'static [&'static str],
    /// Where it comes from.
    pub source: Source,
}

/// Every chart of the report, in the order of the page.
pub const CHARTS: &[ChartPlan] = &[
    ChartPlan {
        title: "Live heap over time",
        caption: "Bytes live on the heap as each fixture ran, the peak marked with its exact \
                  value (sites: 45920 B, fixtures/README.md), heap calls per millisecond below, \
                  and the program's phases as bands (rust_sites marks four).",
        fixtures: &["sites", "vector", "bench_alloc", "rust_sites"],
        source: Source::Plot("heap"),
    },
    ChartPlan {
        title: "Allocation sizes",
        caption: "Allocations per power-of-two size bucket, with exact counts (sites: 100 \
                  requests of 24 B, 200 of 40 B from the threads, 10 of 4 KiB).",
        fixtures: &["sites", "bench_alloc"],
        source: Source::Plot("sizes"),
    },
    ChartPlan {
        title: "Time inside the allocator",
        caption: "How long each malloc, free, calloc and realloc call took, in power-of-two \
                  buckets of nanoseconds; counts on a log scale, so that the rare slow calls \
                  (stalls) are visible next to millions of fast ones.",
        fixtures: &["sites", "bench_alloc"],
        source: Source::Plot("latency"),
    },
    ChartPlan {
        title: "Real-heap fragmentation over the run",
        caption: "glibc's main heap rebuilt from the trace, call by call: its extent, the live bytes, free \
                  bytes in holes between live blocks and above the last block, and external \
                  fragmentation (1 - largest hole / free in holes).",
        fixtures: &["sites", "vector"],
        source: Source::Plot("frag"),
    },
    ChartPlan {
        title: "Allocator policies replayed",
        caption: "Each fixture's own requests replayed through first-fit, next-fit, best-fit, \
                  worst-fit, buddy and slab models, beside a compacting and a copying collector \
                  as references: peak footprint against live bytes, and fragmentation at the \
                  footprint peak.",
        fixtures: &["sites", "vector"],
        source: Source::Plot("policies"),
    },
    ChartPlan {
        title: "Flame graph of bytes allocated",
        caption: "Allocation stacks, each as wide as the bytes it allocated (inferno; open the \
                  SVG on its own to hover and zoom).",
        fixtures: &["sites", "vector"],
        source: Source::Plot("flame"),
    },
    ChartPlan {
        title: "Leaks by class",
        caption: "Unfreed blocks classified by reachability at exit (definitely, indirectly, \
                  possibly lost, still reachable), bytes and blocks per class (sites: \
                  leak_one's 1000 B definitely lost; rust_sites: leak_bytes's 1000 B, given to \
                  mem::forget, definitely lost, and 544 B of the Rust runtime still reachable).",
        fixtures: &["sites", "rust_sites"],
        source: Source::Plot("leaks"),
    },
    ChartPlan {
        title: "Cache misses per element, layouts in pairs",
        caption: "Misses per element of the same work on 20000 elements laid out two ways: \
                  fixtures/c/locality.c's modes in pairs and fixtures/c/bulk_vs_single.c, each \
                  side a run of its own (cachegrind counts runs, not phases), from hardware \
                  counters or, on a machine without a PMU like this one, simulated by \
                  cachegrind. A D1 miss is a 64-byte line fetched: an array of 8-byte values \
                  filled once and summed 4 times costs 5/8 (array, SoA and bulk: 0.63 here), \
                  AoS one line per read (5.01); the linked list and the scattered blocks 18.0 \
                  and 10.3, most of it allocating, shuffling and freeing two blocks per \
                  element (the list's 4 traversals cost 4). bulk_vs_single: 1.76 one block \
                  per item, 0.51 in bulk (a 32-byte memset is half a line). LL misses are \
                  first touches only, as the model's LL (this host's L3) holds every run. \
                  Below, one run per function: the program's own functions first.",
        fixtures: &[],
        source: Source::Cache,
    },
    ChartPlan {
        title: "Swap, faults and memory pressure over time",
        caption: "RSS, swap, major faults per second and memory pressure of the working-set \
                  walker (fixtures/c/walker.c), with the monitor's verdict as bands: 64 MiB for \
                  2 s with no memory limit (the control, which stays ok), then, when the report \
                  runs as root, 256 MiB for 4 s in a memory cgroup limited to 64 MiB with a \
                  temporary 512 MiB swap file (removed after the run), which swaps and thrashes. \
                  Without root the report lists why the second run is missing.",
        fixtures: &[],
        source: Source::Swap,
    },
];

/// What drawing the charts gave.
pub struct Charts {
    /// The page's sections, one per chart of [`CHARTS`].
    pub sections: Vec<Section>,
    /// Every SVG written.
    pub files: Vec<PathBuf>,
    /// `(chart, reason)` for each placeholder.
    pub skipped: Vec<(String, String)>,
}

/// What [`plot_fixture`] ran for one fixture.
pub struct Plotted {
    /// The command, as run in the report directory.
    pub command: String,
    /// The charts it drew.
    pub n_charts: usize,
}

/// Runs `memtrace plot TRACE -o charts/FIXTURE --only CHARTS --data .` in
/// the report directory: the fixture's charts of [`CHARTS`], and from the
/// same reading of the trace its `FIXTURE.txt`, `.json`, `.latency.json` and
/// `.frag.json` beside them (the trace is `traces/FIXTURE.trace`).
pub fn plot_fixture(paths: &Paths, fixture: &str, trace: &Path) -> Result<Plotted> {
    let names: Vec<&str> = CHARTS
        .iter()
        .filter_map(|c| match c.source {
            Source::Plot(name) if c.fixtures.contains(&fixture) => Some(name),
            _ => None,
        })
        .collect();
    if names.is_empty() {
        anyhow::bail!(
            "fixture {fixture} has no chart of memtrace plot in CHARTS, and its report files \
             come from `memtrace plot --data`"
        );
    }
    let out = paths.report.join("charts").join(fixture);
    let trace_rel = rel(&paths.report, trace);
    let out_rel = rel(&paths.report, &out);
    let only = names.join(",");
    let args = [
        "plot", &trace_rel, "-o", &out_rel, "--only", &only, "--data", ".",
    ];
    let mut cmd = Command::new(&paths.memtrace);
    cmd.args(args).current_dir(&paths.report);
    let shown = format!("{} {}", memtrace_as_run(paths), args.join(" "));
    eprintln!("xtask: (in {}) {shown}", paths.report.display());
    util::output(&mut cmd).with_context(|| format!("`{shown}` failed"))?;
    Ok(Plotted {
        command: shown,
        n_charts: names.len(),
    })
}

/// Draws every chart of [`CHARTS`] under `paths.report/charts`: those of
/// `memtrace plot` are already there, drawn by [`plot_fixture`] for the
/// fixtures of `plotted` (`(fixture, what it ran)` pairs); the others are
/// drawn now.
pub fn draw(paths: &Paths, plotted: &[(&str, &Plotted)]) -> Result<Charts> {
    let dir = paths.report.join("charts");
    memtrace_safe_write::OutDir::create(&dir)?;
    let commands: Vec<(&str, &String)> = plotted.iter().map(|(f, p)| (*f, &p.command)).collect();

    let mut sections = Vec::new();
    let mut files = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    for plan in CHARTS {
        let mut figures = Vec::new();
        match plan.source {
            Source::Plot(name) => {
                for (fixture, command) in &commands {
                    if !plan.fixtures.contains(fixture) {
                        continue;
                    }
                    let file = dir.join(fixture).join(format!("{name}.svg"));
                    if !file.is_file() {
                        anyhow::bail!("`{command}` wrote no {}", file.display());
                    }
                    figures.push(Figure {
                        file: rel(&paths.report, &file),
                        title: format!("{}: {fixture}", plan.title),
                        caption: String::new(),
                        command: command.to_string(),
                    });
                    files.push(file);
                }
            }
            Source::Cache => {
                let (figure, file) =
                    crate::cache_pairs::draw(paths, &dir, plan.title, &mut skipped)?;
                figures.push(figure);
                files.push(file);
                // The per-function view of one run, as `memtrace cache
                // --svg` draws it, of the locality fixture `draw` built.
                let exe = paths.bin.join("locality");
                let (figure, file) = tool_chart(
                    paths,
                    &dir,
                    ("cache-functions", &["cache"]),
                    &exe,
                    &["all", "20000"],
                    "Cache misses per function: locality all 20000".into(),
                    &mut skipped,
                )?;
                figures.push(figure);
                files.push(file);
            }
            Source::Swap => {
                let exe = util::compile(paths, "cc", &["-O2", "-g"], "c/walker.c", "walker")?;
                let (figure, file) = tool_chart(
                    paths,
                    &dir,
                    ("swap", &["swap", "--interval", "100"]),
                    &exe,
                    &["anon", "64", "2"],
                    format!("{}: walker, 64 MiB, no limit", plan.title),
                    &mut skipped,
                )?;
                figures.push(figure);
                files.push(file);
                // The same walker, four times larger, under a 64 MiB limit
                // with swap: the bands the monitor is for.
                match crate::constrained::Constrained::new(&paths.report) {
                    Ok(limit) => {
                        let cgroup = limit.cgroup.display().to_string();
                        let (figure, file) = tool_chart(
                            paths,
                            &dir,
                            (
                                "swap-limited",
                                &["swap", "--interval", "100", "--cgroup", &cgroup],
                            ),
                            &exe,
                            &["anon", "256", "4"],
                            format!(
                                "{}: walker, 256 MiB under a {} MiB limit",
                                plan.title,
                                crate::constrained::LIMIT_MIB
                            ),
                            &mut skipped,
                        )?;
                        figures.push(figure);
                        files.push(file);
                    }
                    Err(why) => {
                        eprintln!("xtask: only the unconstrained swap run: {why}");
                        skipped.push(("swap under a memory limit".into(), why));
                    }
                }
            }
        }
        sections.push(Section {
            heading: plan.title.to_string(),
            text: plan.caption.to_string(),
            figures,
        });
    }
    Ok(Charts {
        sections,
        files,
        skipped,
    })
}

/// Runs `memtrace TOOL_ARGS --svg charts/STEM.svg -- PROGRAM PROGRAM_ARGS`
/// in the report directory: the chart of a tool that watches a program.
/// When the tool cannot run here (no valgrind and no hardware counters, no
/// swap accounting), its one error line goes into a placeholder chart and
/// into `skipped`, and the report goes on.
fn tool_chart(
    paths: &Paths,
    dir: &Path,
    (stem, tool_args): (&str, &[&str]),
    program: &Path,
    program_args: &[&str],
    title: String,
    skipped: &mut Vec<(String, String)>,
) -> Result<(Figure, PathBuf)> {
    let path = dir.join(format!("{stem}.svg"));
    let svg_rel = rel(&paths.report, &path);
    let program_rel = rel(&paths.report, program);
    let mut args: Vec<&str> = tool_args.to_vec();
    args.extend(["--svg", &svg_rel, "--", &program_rel]);
    args.extend(program_args);
    let mut cmd = Command::new(&paths.memtrace);
    cmd.args(&args).current_dir(&paths.report);
    let shown = format!("{} {}", memtrace_as_run(paths), args.join(" "));
    eprintln!("xtask: (in {}) {shown}", paths.report.display());
    let run = util::measure(&mut cmd)?;
    if !run.status.success() {
        let reason = tool_error(&run.stderr);
        eprintln!("xtask: {stem} chart skipped: {reason}");
        let svg = memtrace_plot::skipped(&title, &reason).map_err(|e| anyhow::anyhow!("{e}"))?;
        memtrace_safe_write::write_file(&path, svg.as_bytes())?;
        skipped.push((stem.to_string(), reason));
    } else if !path.is_file() {
        anyhow::bail!("`{shown}` wrote no {}", path.display());
    }
    let figure = Figure {
        file: svg_rel,
        title,
        caption: String::new(),
        command: shown,
    };
    Ok((figure, path))
}

/// The memtrace binary as a reader in the report directory would run it
/// (`../release/memtrace`): `memtrace` itself is not on their PATH.
pub(crate) fn memtrace_as_run(paths: &Paths) -> String {
    let target = paths.report.parent().unwrap_or(&paths.report);
    match paths.memtrace.strip_prefix(target) {
        Ok(below) if target != paths.report => format!("../{}", below.display()),
        _ => paths.memtrace.display().to_string(),
    }
}

/// Why a tool failed, from its stderr: memtrace's own error line (the last
/// `memtrace: ...` line), or the last line at all.
pub(crate) fn tool_error(stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("memtrace: "))
        .or(lines.last())
        .copied()
        .unwrap_or("it exited without a message");
    line.trim_start_matches("memtrace: ").trim().to_string()
}

/// The page's introduction.
pub fn intro(paths: &Paths) -> Vec<String> {
    let mut p = String::new();
    let _ = write!(
        p,
        "What memtrace shows on its bundled fixtures (fixtures/README.md derives their exact \
         answers), written by cargo xtask report. Commands ran in {}; the numbers behind \
         the charts are in summary.md and in each fixture's report files beside this page. \
         For your own program: memtrace run -- PROGRAM, then memtrace plot TRACE.",
        paths.report.display()
    );
    vec![p]
}

/// `path` relative to `base` when it is inside it.
pub(crate) fn rel(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .map_or_else(|_| path.display().to_string(), |p| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A `memtrace` that fails the way `memtrace cache` does on a machine
    /// with neither hardware counters nor valgrind.
    const FAILING: &str = "#!/bin/sh\n\
        echo 'memtrace: no hardware cache counters here (perf_event_open: ENOENT), \
        and valgrind is not installed for the simulation' >&2\nexit 2\n";

    #[test]
    fn a_tool_that_cannot_run_leaves_a_placeholder_that_says_why() {
        let root = std::env::temp_dir().join(format!("xtask-charts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // target/ as cargo lays it out: the report beside release/.
        let report = root.join("memtrace-report");
        let charts = report.join("charts");
        std::fs::create_dir_all(&charts).unwrap();
        std::fs::create_dir_all(root.join("release")).unwrap();
        let memtrace = root.join("release/memtrace");
        std::fs::write(&memtrace, FAILING).unwrap();
        std::fs::set_permissions(&memtrace, std::fs::Permissions::from_mode(0o755)).unwrap();
        let paths = Paths {
            root: root.clone(),
            report: report.clone(),
            out: memtrace_safe_write::OutDir::create(&report).unwrap(),
            bin: root.clone(),
            traces: root.clone(),
            release: root.clone(),
            memtrace,
        };
        let mut skipped = Vec::new();
        let (figure, file) = tool_chart(
            &paths,
            &charts,
            ("cache", &["cache"]),
            Path::new("/bin/true"),
            &[],
            "Cache misses: locality".into(),
            &mut skipped,
        )
        .unwrap();
        let reason = "no hardware cache counters here (perf_event_open: ENOENT), \
                      and valgrind is not installed for the simulation";
        assert_eq!(skipped, [("cache".to_string(), reason.to_string())]);
        assert_eq!(file, charts.join("cache.svg"));
        assert_eq!(figure.file, "charts/cache.svg");
        // Shown as the reader would run it from the report directory.
        assert_eq!(
            figure.command,
            "../release/memtrace cache --svg charts/cache.svg -- /bin/true"
        );
        let svg = std::fs::read_to_string(&file).unwrap();
        assert!(svg.contains(&format!("skipped: {reason}")), "{svg}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn the_reason_is_memtraces_last_error_line() {
        assert_eq!(
            tool_error("warming up\nmemtrace: first\nmemtrace: cannot run valgrind\n\n"),
            "cannot run valgrind"
        );
        assert_eq!(tool_error("Segmentation fault\n"), "Segmentation fault");
        assert_eq!(tool_error(""), "it exited without a message");
    }
}
