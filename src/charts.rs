//! memtrace's analyses turned into chart data for `memtrace-plot`: one
//! function per chart, pure (no files, no trace reading).
//!
//! Every chart's numbers come straight from the structures that
//! `memtrace report`, `latency` and `frag` print as JSON, so a chart can be
//! checked against the command's output.

use memtrace_analyze::heapmap::HeapMap;
use memtrace_analyze::latency::LatencyReport;
use memtrace_analyze::report::Report;
use memtrace_analyze::units::{bytes, count, seconds};
use memtrace_frag::{PolicyKind, PolicyReport};
use memtrace_plot::{
    Band, BarChart, BarPanel, BarSeries, Histogram, Marker, Panel, Scale, Series, Timeline, Unit,
};

/// The file name of the traced program, for titles.
pub fn program_name(exe: &str) -> String {
    std::path::Path::new(exe)
        .file_name()
        .map_or_else(|| exe.to_string(), |n| n.to_string_lossy().into_owned())
}

/// The peak's label on the heap chart: `peak 44.84 KiB (45920 B) at 388.5 us`.
pub fn peak_label(peak_bytes: u64, peak_time_ns: u64) -> String {
    format!(
        "peak {} ({peak_bytes} B) at {}",
        bytes(peak_bytes),
        seconds(peak_time_ns)
    )
}

/// Live heap over time with the peak marked, heap calls per millisecond
/// below it, and the program's phases as bands.
///
/// The report's timeline is sampled (at most about 1000 points), so the
/// exact peak from the totals is added as a point of the line.
pub fn heap_timeline(r: &Report) -> Timeline {
    let t = &r.totals;
    let mut live: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .map(|p| (p.time_ns as f64, p.live_bytes as f64))
        .collect();
    if t.peak_bytes > 0 {
        let peak = (t.peak_time_ns as f64, t.peak_bytes as f64);
        let at = live.partition_point(|p| p.0 <= peak.0);
        live.insert(at, peak);
    }
    // No heap call after the last point: the heap stays as it is to the end.
    if let Some(&(last_t, _)) = live.last() {
        if (t.duration_ns as f64) > last_t {
            live.push((t.duration_ns as f64, t.unfreed_bytes as f64));
        }
    }
    // The mean rate over each interval between two samples, drawn as a step.
    let mut rate = Vec::with_capacity(2 * r.timeline.len());
    for w in r.timeline.windows(2) {
        let dt_ms = (w[1].time_ns.saturating_sub(w[0].time_ns)) as f64 / 1e6;
        if dt_ms > 0.0 {
            let per_ms = w[1].calls.saturating_sub(w[0].calls) as f64 / dt_ms;
            rate.push((w[0].time_ns as f64, per_ms));
            rate.push((w[1].time_ns as f64, per_ms));
        }
    }
    let mut bands = Vec::new();
    for (i, p) in r.phases.iter().enumerate() {
        // An empty name ends a phase without starting one.
        if p.name.is_empty() {
            continue;
        }
        let end = r.phases.get(i + 1).map_or(t.duration_ns, |n| n.time_ns);
        bands.push(Band {
            start: p.time_ns as f64,
            end: end as f64,
            label: format!("phase {}", p.name),
            color: None,
        });
    }
    let mut panels = vec![Panel {
        label: "live heap".into(),
        unit: Unit::Bytes,
        series: vec![Series {
            name: "live heap".into(),
            points: live,
        }],
        filled: true,
    }];
    if !rate.is_empty() {
        panels.push(Panel {
            label: "heap calls per ms".into(),
            unit: Unit::Count,
            series: vec![Series {
                name: "heap calls per ms".into(),
                points: rate,
            }],
            filled: false,
        });
    }
    let markers = if t.peak_bytes > 0 {
        vec![Marker {
            panel: 0,
            x: t.peak_time_ns as f64,
            y: t.peak_bytes as f64,
            label: peak_label(t.peak_bytes, t.peak_time_ns),
        }]
    } else {
        Vec::new()
    };
    Timeline {
        title: format!("Live heap over time: {}", program_name(&r.program.exe)),
        subtitle: Some(format!(
            "{} in {}; {} allocated; unfreed at exit {} in {}",
            count(t.events, "heap call"),
            seconds(t.duration_ns),
            bytes(t.bytes_allocated),
            bytes(t.unfreed_bytes),
            count(t.unfreed_blocks, "block")
        )),
        x_label: "time since the trace's start".into(),
        x_unit: Unit::Nanos,
        x_end: Some(t.duration_ns as f64),
        panels,
        bands,
        markers,
    }
}

/// Index of the power-of-two bucket whose smallest value is `min`
/// (0 holds 0, `i` holds `[2^(i-1), 2^i)`), as `memtrace report` and
/// `memtrace latency` number them.
fn bucket_index(min: u64) -> usize {
    if min == 0 {
        0
    } else {
        64 - min.leading_zeros() as usize
    }
}

/// The smallest value of bucket `i`.
fn bucket_min(i: usize) -> u64 {
    if i == 0 {
        0
    } else {
        1u64 << (i - 1)
    }
}

/// A power of two in a unit, without needless decimals: `16 B`, `4 KiB`, `512 ns`, `2 ms`.
pub fn pow2_label(value: u64, unit: Unit) -> String {
    if unit == Unit::Nanos && value >= 1000 {
        // Powers of two are not round in us or ms: every label gets three
        // significant digits (1.02 us, 4.10 us, 131 us, 2.10 ms), not
        // `1 us` beside `4.1 us`.
        let scale = unit.scale_for(value as f64);
        let shown = value as f64 / scale.divisor;
        let decimals = if shown >= 100.0 {
            0
        } else if shown >= 10.0 {
            1
        } else {
            2
        };
        return format!("{shown:.decimals$} {}", scale.name);
    }
    let text = unit.format(value as f64);
    // `4.00 KiB` -> `4 KiB`, `1.0 us` -> `1 us`; keep `1.5 KiB`-like values.
    let mut parts = text.splitn(2, ' ');
    let number = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    let number = if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    };
    format!("{number} {rest}")
}

/// Buckets from the smallest to the largest non-empty one (empty ones in
/// between included, so the axis stays logarithmic), as labels, plus each
/// series' counts in that range.
fn pow2_range(series: &[Vec<(u64, u64)>], unit: Unit) -> (Vec<String>, Vec<Vec<u64>>) {
    let indices = series
        .iter()
        .flat_map(|s| s.iter().map(|(min, _)| bucket_index(*min)));
    let (Some(lo), Some(hi)) = (indices.clone().min(), indices.max()) else {
        return (Vec::new(), Vec::new());
    };
    let labels = (lo..=hi).map(|i| pow2_label(bucket_min(i), unit)).collect();
    let counts = series
        .iter()
        .map(|s| {
            let mut counts = vec![0; hi - lo + 1];
            for (min, count) in s {
                counts[bucket_index(*min) - lo] += count;
            }
            counts
        })
        .collect();
    (labels, counts)
}

/// Requested sizes per power-of-two bucket; `None` when nothing was allocated.
pub fn size_histogram(r: &Report) -> Option<Histogram> {
    let buckets: Vec<(u64, u64)> = r.size_histogram.iter().map(|b| (b.min, b.count)).collect();
    let (labels, counts) = pow2_range(&[buckets], Unit::Bytes);
    let counts = counts.into_iter().next()?;
    Some(Histogram {
        title: format!("Allocation sizes: {}", program_name(&r.program.exe)),
        subtitle: Some(format!(
            "{}, {} requested",
            count(r.totals.allocations, "allocation"),
            bytes(r.totals.bytes_allocated)
        )),
        x_label: "requested size (each bar: from this size to just under the next)".into(),
        buckets: labels,
        count_label: "allocations".into(),
        series: vec![("allocations".into(), counts)],
        scale: Scale::Linear,
    })
}

/// A function's legend name on the latency chart: `malloc (311 calls)`.
pub fn latency_series_name(function: &str, calls: u64) -> String {
    format!("{function} ({})", count(calls, "call"))
}

/// Time inside the allocator per power-of-two bucket of nanoseconds, one
/// series per function, counts on a log scale; `None` when the trace has no
/// latencies.
pub fn latency_histogram(r: &LatencyReport) -> Option<Histogram> {
    if !r.latency_measured || r.functions.iter().all(|f| f.histogram.is_empty()) {
        return None;
    }
    let functions: Vec<_> = r.functions.iter().filter(|f| f.calls > 0).collect();
    let buckets: Vec<Vec<(u64, u64)>> = functions
        .iter()
        .map(|f| f.histogram.iter().map(|b| (b.min_ns, b.count)).collect())
        .collect();
    let (labels, counts) = pow2_range(&buckets, Unit::Nanos);
    Some(Histogram {
        title: format!(
            "Time inside the allocator: {}",
            program_name(&r.program.exe)
        ),
        subtitle: Some(format!(
            "{} in the allocator, {:.1}% of the traced threads' {} (run: {}); {} of at least {}",
            seconds(r.allocator_ns),
            r.allocator_share * 100.0,
            seconds(r.thread_ns),
            seconds(r.wall_ns),
            count(r.stalls.calls, "stall"),
            seconds(r.stalls.threshold_ns)
        )),
        x_label: "time per call (each bar: from this time to just under the next)".into(),
        buckets: labels,
        count_label: "calls".into(),
        series: functions
            .iter()
            .zip(counts)
            .map(|(f, c)| (latency_series_name(&f.function, f.calls), c))
            .collect(),
        scale: Scale::Log,
    })
}

/// The real heap's subtitle: the numbers at the live peak, exact.
pub fn real_heap_subtitle(h: &HeapMap) -> String {
    let p = &h.at_peak;
    format!(
        "at the live peak: {} B live in a {} B heap, {} of {} B, largest {} B, external fragmentation {:.1}%",
        p.live_bytes,
        p.extent_bytes,
        count(p.n_holes, "hole"),
        p.free_in_holes,
        p.largest_hole,
        p.external * 100.0
    )
}

/// glibc's main heap over the run: its extent, the live bytes, the free
/// bytes in holes and above the last block, and external fragmentation
/// below; `None` when the trace has no `[heap]` snapshot.
///
/// The x axis is time since the trace's start, to its end: the heap map's
/// points (evenly spaced by heap call) are offsets into the trace's span,
/// as the report's are, and the end's values hold from the last heap call
/// to the end of the trace, as on the live-heap chart.
pub fn real_heap_timeline(h: &HeapMap, program: &str) -> Option<Timeline> {
    if !h.measured || h.timeline.is_empty() {
        return None;
    }
    // The evenly spaced points, with the live peak and the end among them:
    // the curves reach the peak the subtitle states.
    let mut at: Vec<&memtrace_analyze::heapmap::HeapPoint> = h.timeline.iter().collect();
    let peak = at.partition_point(|p| p.time_ns <= h.at_peak.time_ns);
    at.insert(peak, &h.at_peak);
    if at.last().is_some_and(|p| p.time_ns < h.at_end.time_ns) {
        at.push(&h.at_end);
    }
    // No heap call after the end's point: the heap stays as it is.
    let held = memtrace_analyze::heapmap::HeapPoint {
        time_ns: h.duration_ns,
        ..h.at_end
    };
    if at.last().is_some_and(|p| p.time_ns < held.time_ns) {
        at.push(&held);
    }
    let series = |name: &str, f: &dyn Fn(&memtrace_analyze::heapmap::HeapPoint) -> u64| Series {
        name: name.into(),
        points: at.iter().map(|p| (p.time_ns as f64, f(p) as f64)).collect(),
    };
    Some(Timeline {
        title: format!("Real heap fragmentation over the run: {program}"),
        subtitle: Some(real_heap_subtitle(h)),
        x_label: "time since the trace's start".into(),
        x_unit: Unit::Nanos,
        x_end: Some(h.duration_ns as f64),
        panels: vec![
            Panel {
                label: "bytes".into(),
                unit: Unit::Bytes,
                series: vec![
                    series("heap extent ([heap])", &|p| p.extent_bytes),
                    series("live (whole program)", &|p| p.live_bytes),
                    series("free in holes", &|p| p.free_in_holes),
                    series("free above the last block", &|p| p.top_free),
                ],
                filled: false,
            },
            Panel {
                label: "external fragmentation".into(),
                unit: Unit::Ratio,
                series: vec![Series {
                    name: "1 - largest hole / free in holes".into(),
                    points: at.iter().map(|p| (p.time_ns as f64, p.external)).collect(),
                }],
                filled: false,
            },
        ],
        bands: Vec::new(),
        markers: Vec::new(),
    })
}

/// Peak footprint against live bytes, and fragmentation at the footprint
/// peak, per allocator policy replayed.
pub fn policy_chart(
    reports: &[PolicyReport],
    best: Option<&(PolicyKind, String)>,
    program: &str,
) -> Option<BarChart> {
    if reports.is_empty() {
        return None;
    }
    let column = |f: &dyn Fn(&PolicyReport) -> f64| -> Vec<Option<f64>> {
        reports.iter().map(|r| Some(f(r))).collect()
    };
    let internal_share = |r: &PolicyReport| {
        if r.peak_footprint == 0 {
            0.0
        } else {
            r.internal_at_peak as f64 / r.peak_footprint as f64
        }
    };
    Some(BarChart {
        title: format!("Allocator policies replayed: {program}"),
        subtitle: best.map(|(_, why)| format!("best for this program: {why}")),
        x_label: "policy (compact and semispace: reference collectors)".into(),
        categories: reports
            .iter()
            .map(|r| r.policy.name().to_string())
            .collect(),
        panels: vec![
            BarPanel {
                label: "bytes".into(),
                unit: Unit::Bytes,
                scale: Scale::Linear,
                series: vec![
                    BarSeries {
                        name: "peak footprint".into(),
                        values: column(&|r| r.peak_footprint as f64),
                    },
                    BarSeries {
                        name: "live at peak".into(),
                        values: column(&|r| r.peak_live as f64),
                    },
                ],
            },
            BarPanel {
                label: "fragmentation at the footprint peak".into(),
                unit: Unit::Ratio,
                scale: Scale::Linear,
                series: vec![
                    BarSeries {
                        name: "external (1 - largest hole / free)".into(),
                        values: column(&|r| r.external_at_peak),
                    },
                    BarSeries {
                        name: "internal (wasted / footprint)".into(),
                        values: column(&internal_share),
                    },
                ],
            },
        ],
        touching: false,
        value_labels: false,
        groups: Vec::new(),
    })
}

/// Bytes and blocks per leak class, for `memtrace plot`'s leak chart.
pub fn leak_chart(r: &memtrace_analyze::leaks::LeakReport) -> BarChart {
    let classes = memtrace_leaks::LeakClass::ALL;
    let column = |f: &dyn Fn((u64, u64)) -> u64| -> Vec<Option<f64>> {
        classes
            .iter()
            .map(|&c| Some(f(r.totals.of(c)) as f64))
            .collect()
    };
    BarChart {
        title: format!("Leaks by class: {}", program_name(&r.program)),
        subtitle: Some(format!(
            "exit-time reachability scan: {:.1} ms, {} thread(s)",
            r.scan.duration_ms, r.scan.threads
        )),
        x_label: "class at exit (memcheck's meaning)".into(),
        categories: classes.iter().map(|c| c.phrase().to_string()).collect(),
        panels: vec![
            BarPanel {
                label: "bytes".into(),
                unit: Unit::Bytes,
                scale: Scale::Linear,
                series: vec![BarSeries {
                    name: "bytes".into(),
                    values: column(&|(bytes, _)| bytes),
                }],
            },
            BarPanel {
                label: "blocks".into(),
                unit: Unit::Count,
                scale: Scale::Linear,
                series: vec![BarSeries {
                    name: "blocks".into(),
                    values: column(&|(_, blocks)| blocks),
                }],
            },
        ],
        touching: false,
        value_labels: true,
        groups: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_labels_are_round_powers_of_two() {
        assert_eq!(pow2_label(16, Unit::Bytes), "16 B");
        assert_eq!(pow2_label(4096, Unit::Bytes), "4 KiB");
        assert_eq!(pow2_label(1 << 20, Unit::Bytes), "1 MiB");
        assert_eq!(pow2_label(512, Unit::Nanos), "512 ns");
        let us: Vec<String> = (10..=21).map(|k| pow2_label(1 << k, Unit::Nanos)).collect();
        assert_eq!(
            us,
            [
                "1.02 us", "2.05 us", "4.10 us", "8.19 us", "16.4 us", "32.8 us", "65.5 us",
                "131 us", "262 us", "524 us", "1.05 ms", "2.10 ms"
            ]
        );
    }

    #[test]
    fn gaps_between_buckets_are_filled_with_zero() {
        // 16-31: 100, 64-127: 3; and a second series with 32-63: 7.
        let (labels, counts) = pow2_range(&[vec![(16, 100), (64, 3)], vec![(32, 7)]], Unit::Bytes);
        assert_eq!(labels, ["16 B", "32 B", "64 B"]);
        assert_eq!(counts, [vec![100, 0, 3], vec![0, 7, 0]]);
        assert_eq!(bucket_index(0), 0);
        assert_eq!(bucket_index(1), 1);
        assert_eq!(bucket_min(bucket_index(4096)), 4096);
    }

    #[test]
    fn the_real_heap_holds_its_last_values_to_the_end_of_the_trace() {
        use memtrace_analyze::heapmap::HeapPoint;
        let point = |time_ns, live_bytes| HeapPoint {
            time_ns,
            live_bytes,
            ..HeapPoint::default()
        };
        let h = HeapMap {
            timeline: vec![point(100, 10), point(200, 30)],
            at_peak: point(150, 40),
            at_end: point(300, 20),
            measured: true,
            duration_ns: 1000,
            ..HeapMap::default()
        };
        let chart = real_heap_timeline(&h, "demo").unwrap();
        let live = &chart.panels[0].series[1];
        assert_eq!(live.name, "live (whole program)");
        // The points, the peak among them, the end, and the end held.
        assert_eq!(
            live.points,
            [
                (100.0, 10.0),
                (150.0, 40.0),
                (200.0, 30.0),
                (300.0, 20.0),
                (1000.0, 20.0)
            ]
        );
    }
}
