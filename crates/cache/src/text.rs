//! The text form of [`Findings`]: every number with its source, and a
//! counter that was not measured shown with the reason, never as 0.

use std::fmt::Write as _;

use crate::counters::{EventKind, Outcome, Source};
use crate::findings::Findings;
use crate::phases::PhaseCounts;

/// The text report: counters, simulated misses, phases and scatter, each
/// part only when it was measured; `top` rows per table.
pub fn render_text(f: &Findings, top: usize) -> String {
    let mut out = String::new();
    if let Some(run) = &f.counted {
        let _ = writeln!(
            out,
            "Counters (perf_event_open), from exec on, threads and children included:"
        );
        for e in &run.events {
            let kind = match e.kind.source() {
                Source::Hardware => "hw",
                Source::Software => "sw",
            };
            let text = match &e.outcome {
                Outcome::Measured(m) => {
                    let mut t = format!("{:>16}", m.scaled);
                    if m.time_running_ns < m.time_enabled_ns {
                        let _ = write!(
                            t,
                            "  (scaled: ran {:.1}% of the time, raw {})",
                            m.running_share() * 100.0,
                            m.raw
                        );
                    }
                    if m.user_only {
                        t.push_str("  (user space only)");
                    }
                    t
                }
                Outcome::NeverRan => format!("{:>16}  never scheduled on a counter", "not counted"),
                Outcome::Unavailable(why) => format!("{:>16}  {why}", "unsupported"),
            };
            let _ = writeln!(out, "  {kind} {:<22} {text}", e.name);
        }
        if let Some(p) = run.paranoid {
            let _ = writeln!(out, "  (perf_event_paranoid = {p})");
        }
        if !f.derived.is_empty() {
            let _ = writeln!(out, "Derived:");
            for d in &f.derived {
                let _ = writeln!(out, "  {:<22} {:>12.4}", d.name, d.value);
            }
        } else if !run.any_hardware() {
            let _ = writeln!(
                out,
                "Derived: none (no hardware counter could be opened; no ratio, MPKI or IPC)"
            );
        }
    }
    match &f.simulated {
        Some(Ok(sim)) => {
            let t = &sim.total;
            let _ = writeln!(
                out,
                "\nSimulated misses (cachegrind; a model of the caches, not the hardware):"
            );
            for c in &sim.caches {
                let _ = writeln!(out, "  {c}");
            }
            let _ = writeln!(out, "  {:<30} {:>14}", "instructions", t.instructions);
            let _ = writeln!(out, "  {:<30} {:>14}", "data references", t.data_refs());
            let _ = writeln!(
                out,
                "  {:<30} {:>14}  ({} read, {} write)",
                "D1 misses (simulated)",
                t.d1_misses(),
                t.d1_read_misses,
                t.d1_write_misses
            );
            let _ = writeln!(
                out,
                "  {:<30} {:>14}  ({} read, {} write)",
                "LL data misses (simulated)",
                t.ll_misses(),
                t.ll_read_misses,
                t.ll_write_misses
            );
            let _ = writeln!(out, "  Functions with the most simulated D1 misses:");
            for (name, c) in sim.functions.iter().take(top) {
                let _ = writeln!(
                    out,
                    "    {:>12} D1  {:>12} LL  {name}",
                    c.d1_misses(),
                    c.ll_misses()
                );
            }
        }
        Some(Err(why)) => {
            let _ = writeln!(out, "\nSimulated misses: not available ({why})");
        }
        None => {}
    }
    if let Some(phases) = &f.phases {
        let _ = writeln!(
            out,
            "\nPhases (recorder's getrusage counters, whole process):"
        );
        if phases.is_empty() {
            let _ = writeln!(out, "  none (the program called no memtrace_phase)");
        }
        for p in phases {
            let cells: Vec<String> = p
                .deltas
                .iter()
                .map(|(name, d)| match d {
                    Some(v) => format!("{name} {v}"),
                    None => format!("{name} not measured"),
                })
                .collect();
            let _ = writeln!(out, "  {:<16} {}", p.name, cells.join(", "));
        }
        render_phase_perf(&mut out, phases);
    }
    if let Some(sites) = &f.scatter {
        let _ = writeln!(
            out,
            "\nAllocation scatter (from the trace; each stack at its own peak of live bytes):"
        );
        let _ = writeln!(
            out,
            "  {:>8} {:>10} {:>10} {:>7} {:>8} {:>9} {:>12}  site",
            "blocks", "lines", "packed", "ratio", "pages", "packed", "mean dist"
        );
        for s in sites.iter().take(top) {
            let c = &s.scatter;
            let dist = c
                .mean_distance
                .map_or_else(|| "-".to_string(), |d| format!("{d:.0} B"));
            let _ = writeln!(
                out,
                "  {:>8} {:>10} {:>10} {:>7.2} {:>8} {:>9} {:>12}  {}{}",
                c.peak_blocks,
                c.lines,
                c.min_lines,
                c.line_ratio(),
                c.pages,
                c.min_pages,
                dist,
                s.site,
                if c.is_scattered() { "  SCATTERED" } else { "" }
            );
        }
        let scattered: Vec<&str> = sites
            .iter()
            .filter(|s| s.scatter.is_scattered())
            .map(|s| s.site.as_str())
            .collect();
        if !scattered.is_empty() {
            let _ = writeln!(
                out,
                "  Scattered (objects spread over >{}x the cache lines they need; allocate them in bulk or from a pool): {}",
                crate::scatter::SCATTER_RATIO,
                scattered.join("; ")
            );
        }
    }
    out
}

/// The recorder's per-phase `perf_event_open` counts: a row per phase of
/// the measured ones, then each unsupported counter once with its reason.
fn render_phase_perf(out: &mut String, phases: &[PhaseCounts]) {
    if phases.iter().all(|p| p.perf.is_empty()) {
        return;
    }
    let _ = writeln!(
        out,
        "\nPhases (perf_event_open in the recorder: the marking thread and the threads it started):"
    );
    let measured_anywhere = |kind: EventKind| {
        phases.iter().any(|p| {
            p.perf
                .iter()
                .any(|(k, o)| *k == kind && matches!(o, Outcome::Measured(_)))
        })
    };
    let mut unsupported: Vec<(EventKind, String)> = Vec::new();
    for p in phases {
        let mut cells = Vec::new();
        for (kind, outcome) in &p.perf {
            match outcome {
                Outcome::Measured(m) => {
                    let mut cell = format!("{} {}", kind.name(), m.scaled);
                    if m.time_running_ns < m.time_enabled_ns {
                        let _ = write!(cell, " (scaled, ran {:.0}%)", m.running_share() * 100.0);
                    }
                    cells.push(cell);
                }
                Outcome::NeverRan => cells.push(format!("{} never scheduled", kind.name())),
                Outcome::Unavailable(why) if measured_anywhere(*kind) => {
                    cells.push(format!("{} not measured ({why})", kind.name()));
                }
                Outcome::Unavailable(why) => {
                    if !unsupported.iter().any(|(k, _)| k == kind) {
                        unsupported.push((*kind, why.clone()));
                    }
                }
            }
        }
        let _ = writeln!(out, "  {:<16} {}", p.name, cells.join(", "));
    }
    for (kind, why) in unsupported {
        let _ = writeln!(out, "  {:<22} unsupported  {why}", kind.name());
    }
}
