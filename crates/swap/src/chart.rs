//! The SVG timeline chart, drawn by `memtrace-plot` like every other
//! memtrace chart: RSS and swap, major faults per second and memory
//! pressure, one panel each over a shared time axis, with the verdict of
//! each interval as a coloured band behind every panel.
//!
//! A panel whose values are all zero (no major fault, no pressure stall)
//! is left out, and the subtitle says so: a flat line on an empty axis
//! tells less than the sentence.

use memtrace_plot::{timeline, Band, Panel, PlotError, Series, Timeline, Unit};

use crate::{Interval, Sample, State, Summary};

/// The band colour of a state.
pub fn state_color(state: State) -> (u8, u8, u8) {
    match state {
        State::Ok => (225, 240, 225),
        State::Reclaiming => (255, 236, 153),
        State::Swapping => (255, 190, 120),
        State::Thrashing => (240, 128, 128),
    }
}

/// Draws the timeline of `samples` (with their `intervals` and `states`)
/// for the program `program`, summed up by `summary`, as an SVG document.
pub fn render_svg(
    program: &str,
    summary: &Summary,
    samples: &[Sample],
    intervals: &[Interval],
    states: &[State],
) -> Result<String, PlotError> {
    let ns = |ms: u64| ms as f64 * 1e6;
    let mut notes = vec![format!(
        "verdict {}; peak RSS {}, peak swap {}",
        summary.worst_state,
        Unit::Bytes.format(summary.peak_rss_kib as f64 * 1024.0),
        Unit::Bytes.format(summary.peak_swap_kib as f64 * 1024.0),
    )];
    let mut panels = vec![Panel {
        label: "memory".into(),
        unit: Unit::Bytes,
        series: vec![
            Series {
                name: "RSS".into(),
                points: samples
                    .iter()
                    .map(|s| (ns(s.t_ms), s.rss_kib() as f64 * 1024.0))
                    .collect(),
            },
            Series {
                name: "swap".into(),
                points: samples
                    .iter()
                    .map(|s| (ns(s.t_ms), s.swap_kib as f64 * 1024.0))
                    .collect(),
            },
        ],
        filled: false,
    }];
    // A rate holds over its whole interval: drawn as a step.
    let steps = |f: &dyn Fn(&Interval) -> Option<f64>| -> Vec<(f64, f64)> {
        intervals
            .iter()
            .filter_map(|i| f(i).map(|v| [(ns(i.start_ms), v), (ns(i.end_ms), v)]))
            .flatten()
            .collect()
    };
    let faults = steps(&|i| Some(i.majflt_per_s));
    if faults.iter().any(|p| p.1 > 0.0) {
        panels.push(Panel {
            label: "major faults per second".into(),
            unit: Unit::Count,
            series: vec![Series {
                name: "major faults/s".into(),
                points: faults,
            }],
            filled: false,
        });
    } else {
        notes.push("no major fault".into());
    }
    let some = steps(&|i| i.some_pct.map(|p| p / 100.0));
    let full = steps(&|i| i.full_pct.map(|p| p / 100.0));
    if some.is_empty() && full.is_empty() {
        notes.push("memory pressure not measured (no PSI)".into());
    } else if some.iter().chain(&full).all(|p| p.1 == 0.0) {
        notes.push("no memory pressure stall".into());
    } else {
        panels.push(Panel {
            label: "memory pressure: interval stalled".into(),
            unit: Unit::Ratio,
            series: vec![
                Series {
                    name: "some".into(),
                    points: some,
                },
                Series {
                    name: "full".into(),
                    points: full,
                },
            ],
            filled: false,
        });
    }
    let bands = intervals
        .iter()
        .zip(states)
        .map(|(i, &state)| Band {
            start: ns(i.start_ms),
            end: ns(i.end_ms),
            label: state.name().into(),
            color: Some(state_color(state)),
        })
        .collect();
    timeline(&Timeline {
        title: format!("Swap and thrash monitor: {program}"),
        subtitle: Some(notes.join("; ")),
        x_label: "time since monitoring started".into(),
        x_unit: Unit::Nanos,
        x_end: samples.last().map(|s| ns(s.t_ms)),
        panels,
        bands,
        markers: Vec::new(),
    })
}
