//! The chart of one `memtrace cache` run, as a `memtrace-plot` bar chart
//! (drawn like every other memtrace chart), labelled with where its numbers
//! come from: hardware counters, or cachegrind's simulation.
//!
//! Per phase where the recorder counted hardware misses in each phase;
//! else the run's hardware totals; else simulated misses per function, the
//! program's own functions first (the fixtures keep each pattern in its
//! own function) and the C library's after, names shortened without being
//! cut mid-word. Comparing runs side by side is [`crate::compare`]'s job.

use memtrace_plot::{BarChart, BarPanel, BarSeries, Scale, Unit};

use crate::cachegrind::Simulation;
use crate::counters::EventKind;
use crate::findings::Findings;

/// What a chart of one run is about.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartConfig {
    /// The command line, for the title.
    pub program: String,
    /// At most this many functions in a per-function chart.
    pub top: usize,
}

/// The miss events a hardware chart shows, in order.
const MISS_EVENTS: [EventKind; 4] = [
    EventKind::L1dLoadMisses,
    EventKind::LlcLoadMisses,
    EventKind::CacheMisses,
    EventKind::DtlbLoadMisses,
];

/// The chart of `f`, or `None` when no miss was measured or simulated.
pub fn plan(f: &Findings, config: &ChartConfig) -> Option<BarChart> {
    per_phase(f, config)
        .or_else(|| hardware_totals(f, config))
        .or_else(|| match &f.simulated {
            Some(Ok(sim)) => Some(per_function(sim, config)),
            _ => None,
        })
}

/// Hardware misses per phase, where the recorder counted them.
fn per_phase(f: &Findings, config: &ChartConfig) -> Option<BarChart> {
    let phases: Vec<_> = f.phases.iter().flatten().collect();
    let events: Vec<EventKind> = MISS_EVENTS
        .into_iter()
        .filter(|k| {
            phases
                .iter()
                .any(|p| p.perf.iter().any(|(e, o)| e == k && o.value().is_some()))
        })
        .collect();
    if events.is_empty() {
        return None;
    }
    let series = events
        .iter()
        .map(|k| BarSeries {
            name: k.name().to_string(),
            values: phases
                .iter()
                .map(|p| {
                    let (_, o) = p.perf.iter().find(|(e, _)| e == k)?;
                    Some(o.value()? as f64)
                })
                .collect(),
        })
        .collect();
    Some(chart(
        format!("Cache misses per phase: {}", config.program),
        "hardware counters, counted in each phase by the recorder",
        "phase",
        phases.iter().map(|p| p.name.clone()).collect(),
        series,
    ))
}

/// The run's hardware miss counts, one bar each.
fn hardware_totals(f: &Findings, config: &ChartConfig) -> Option<BarChart> {
    let run = f.counted.as_ref().filter(|r| r.any_hardware())?;
    let measured: Vec<(EventKind, u64)> = MISS_EVENTS
        .into_iter()
        .filter_map(|k| Some((k, run.value(k)?)))
        .collect();
    if measured.is_empty() {
        return None;
    }
    Some(chart(
        format!("Cache misses: {}", config.program),
        "hardware counters, the whole run",
        "event",
        measured.iter().map(|(k, _)| k.name().to_string()).collect(),
        vec![BarSeries {
            name: "misses".into(),
            values: measured.iter().map(|(_, v)| Some(*v as f64)).collect(),
        }],
    ))
}

/// Simulated D1 and LL misses of the whole run and of the `top` functions,
/// the program's own first.
fn per_function(sim: &Simulation, config: &ChartConfig) -> BarChart {
    let file = |name: &str| sim.files.get(name).map_or("???", String::as_str);
    // `functions` is sorted by D1 misses; a stable sort keeps that order
    // within the program's own functions and within the others.
    let (own, others): (Vec<_>, Vec<_>) = sim
        .functions
        .iter()
        .partition(|(name, _)| is_own_file(file(name)));
    // Up to `top` of the program's own, and at least a few of the others
    // so that the C library's share of the run stays in view.
    let n_own = own.len().min(config.top);
    let n_others = others.len().min(config.top.saturating_sub(n_own).max(3));
    let functions: Vec<_> = own
        .into_iter()
        .take(n_own)
        .chain(others.into_iter().take(n_others))
        .collect();
    let mut categories = vec!["whole run".to_string()];
    categories.extend(functions.iter().map(|(name, _)| short_name(name)));
    let values = |of: fn(&crate::cachegrind::SimCounts) -> u64| -> Vec<Option<f64>> {
        std::iter::once(&sim.total)
            .chain(functions.iter().map(|(_, c)| c))
            .map(|c| Some(of(c) as f64))
            .collect()
    };
    chart(
        format!("Simulated cache misses per function: {}", config.program),
        &match n_others {
            0 => format!("simulated (cachegrind), data reads and writes; the program's own {n_own} functions"),
            _ => format!(
                "simulated (cachegrind), data reads and writes; the program's own {n_own} \
                 functions first, then the {n_others} others (C library, loader) with most D1 misses"
            ),
        },
        "function",
        categories,
        vec![
            BarSeries {
                name: "D1 misses".into(),
                values: values(|c| c.d1_misses()),
            },
            BarSeries {
                name: "LL misses".into(),
                values: values(|c| c.ll_misses()),
            },
        ],
    )
}

fn chart(
    title: String,
    source: &str,
    x_label: &str,
    categories: Vec<String>,
    series: Vec<BarSeries>,
) -> BarChart {
    BarChart {
        title,
        subtitle: Some(format!("Source: {source}.")),
        x_label: x_label.into(),
        categories,
        panels: vec![BarPanel {
            label: "misses".into(),
            unit: Unit::Count,
            scale: Scale::Linear,
            series,
        }],
        touching: false,
        value_labels: true,
        groups: Vec::new(),
    }
}

/// Whether a function whose source file cachegrind gives as `file` is the
/// program's own: it has debug information (not `???`) at an absolute path
/// outside the system's and Rust's libraries. glibc's own debug files are
/// relative paths of its build tree (`./malloc/./malloc/malloc.c`).
pub fn is_own_file(file: &str) -> bool {
    file.starts_with('/') && !file.starts_with("/usr/") && !file.starts_with("/rustc/")
}

/// A function name as a chart label: without an argument list, a symbol
/// version (`@@GLIBC_2.34`) or a compiler's clone suffix (`.constprop.0`,
/// `.isra.0`, `.part.0`, `.cold`), so that it fits without being cut.
pub fn short_name(name: &str) -> String {
    let mut s = name;
    if let Some(open) = s.find('(').filter(|&i| i > 0) {
        s = &s[..open];
    }
    if let Some(at) = s.find('@').filter(|&i| i > 0) {
        s = &s[..at];
    }
    for suffix in [".constprop.", ".isra.", ".part.", ".cold"] {
        if let Some(i) = s.find(suffix).filter(|&i| i > 0) {
            s = &s[..i];
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cachegrind::parse;

    #[test]
    fn names_lose_arguments_versions_and_clone_suffixes_only() {
        assert_eq!(short_name("traverse_list"), "traverse_list");
        assert_eq!(short_name("unlink_chunk.constprop.0"), "unlink_chunk");
        assert_eq!(
            short_name("__libc_start_main@@GLIBC_2.34"),
            "__libc_start_main"
        );
        assert_eq!(short_name("fillin_rpath.isra.0"), "fillin_rpath");
        assert_eq!(
            short_name("std::vec::Vec<T>::push(&mut self)"),
            "std::vec::Vec<T>::push"
        );
        assert_eq!(short_name("(below main)"), "(below main)");
        assert_eq!(
            short_name("__memset_avx2_unaligned_erms"),
            "__memset_avx2_unaligned_erms"
        );
    }

    #[test]
    fn own_files_are_absolute_and_outside_the_system() {
        assert!(is_own_file("/work/fixtures/c/locality.c"));
        assert!(!is_own_file("./malloc/./malloc/malloc.c"));
        assert!(!is_own_file("???"));
        assert!(!is_own_file(
            "/usr/include/x86_64-linux-gnu/bits/string_fortified.h"
        ));
        assert!(!is_own_file("/rustc/0123abcd/library/alloc/src/vec/mod.rs"));
    }

    /// Two glibc functions with more misses than the program's own two.
    const OUT: &str = "events: Ir Dr Dw D1mr D1mw DLmr DLmw
fl=./malloc/./malloc/malloc.c
fn=unlink_chunk.constprop.0
1 100 50 0 90 0 0 0
fn=_int_malloc
1 100 50 0 70 0 0 0
fl=/src/locality.c
fn=traverse_list
1 100 50 0 80 0 4 0
fn=main
1 10 5 0 3 0 1 0
fl=???
fn=???
1 10 5 0 1 0 0 0
summary: 320 160 0 244 0 5 0
";

    #[test]
    fn a_simulated_chart_puts_the_programs_functions_first_with_exact_bars() {
        let sim = parse(OUT).unwrap();
        let config = ChartConfig {
            program: "locality list 20000".into(),
            top: 4,
        };
        let findings = Findings {
            simulated: Some(Ok(sim)),
            ..Findings::default()
        };
        let c = plan(&findings, &config).unwrap();
        // Both own functions, then three others (`top` 4 leaves two, and
        // at least three are shown).
        assert_eq!(
            c.categories,
            [
                "whole run",
                "traverse_list",
                "main",
                "unlink_chunk",
                "_int_malloc",
                "???"
            ]
        );
        let d1 = &c.panels[0].series[0];
        let ll = &c.panels[0].series[1];
        assert_eq!(
            (d1.name.as_str(), ll.name.as_str()),
            ("D1 misses", "LL misses")
        );
        let some = |v: &[f64]| v.iter().map(|&x| Some(x)).collect::<Vec<_>>();
        assert_eq!(d1.values, some(&[244.0, 80.0, 3.0, 90.0, 70.0, 1.0]));
        assert_eq!(ll.values, some(&[5.0, 4.0, 1.0, 0.0, 0.0, 0.0]));
        let subtitle = c.subtitle.as_deref().unwrap();
        assert!(
            subtitle.starts_with("Source: simulated (cachegrind)"),
            "{subtitle}"
        );
        assert!(
            subtitle.ends_with(
                "own 2 functions first, then the 3 others (C library, loader) with most D1 misses."
            ),
            "{subtitle}"
        );

        // Drawn by memtrace-plot: every label whole, on a line of its own.
        let svg = memtrace_plot::bars(&c).unwrap();
        for label in [
            "whole run",
            "traverse_list",
            "unlink_chunk",
            "_int_malloc",
            "244",
            "80",
        ] {
            assert_eq!(svg.matches(&format!("\n{label}\n")).count(), 1, "{label}");
        }
        assert!(svg.contains("Simulated cache misses per function: locality list 20000"));
    }

    #[test]
    fn nothing_measured_is_no_chart() {
        let config = ChartConfig {
            program: "true".into(),
            top: 10,
        };
        assert_eq!(plan(&Findings::default(), &config), None);
    }
}
