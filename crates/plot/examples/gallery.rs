//! Writes one of each chart with made-up data into the directory given as
//! the first argument (default `.`), to look at: `cargo run -p memtrace-plot
//! --example gallery -- /tmp/gallery`.

use memtrace_plot::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    let heap: Vec<(f64, f64)> = (0..200)
        .map(|i| {
            let t = f64::from(i) * 100_000.0;
            (
                t,
                (f64::from(i) * 0.07).sin().abs() * 40_000.0 + f64::from(i) * 30.0,
            )
        })
        .collect();
    let peak = heap
        .iter()
        .copied()
        .fold((0.0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let svg = timeline(&Timeline {
        title: "Live heap over time: example".into(),
        subtitle: Some("peak 44.84 KiB at 3.1 ms".into()),
        x_label: "time since the start".into(),
        x_unit: Unit::Nanos,
        x_end: None,
        panels: vec![
            Panel {
                label: "live heap".into(),
                unit: Unit::Bytes,
                series: vec![Series {
                    name: "live heap".into(),
                    points: heap.clone(),
                }],
                filled: true,
            },
            Panel {
                label: "heap calls per ms".into(),
                unit: Unit::Count,
                series: vec![Series {
                    name: "calls per ms".into(),
                    points: heap.iter().map(|(t, v)| (*t, v / 10.0)).collect(),
                }],
                filled: false,
            },
        ],
        bands: vec![
            Band {
                start: 0.0,
                end: 8e6,
                label: "phase build".into(),
                color: None,
            },
            Band {
                start: 8e6,
                end: 2e7,
                label: "phase traverse".into(),
                color: None,
            },
        ],
        markers: vec![Marker {
            panel: 0,
            x: peak.0,
            y: peak.1,
            label: format!("peak {}", Unit::Bytes.format(peak.1)),
        }],
    })?;
    std::fs::write(dir.join("timeline.svg"), svg)?;
    let buckets: Vec<String> = (3..20)
        .map(|i| Unit::Bytes.format(f64::from(1u32 << i)).replace(".00", ""))
        .collect();
    let counts: Vec<u64> = (3..20).map(|i| (1u64 << (20 - i)) % 5000 + 1).collect();
    std::fs::write(
        dir.join("histogram.svg"),
        histogram(&Histogram {
            title: "Allocation sizes: example".into(),
            subtitle: None,
            x_label: "requested size (power-of-two buckets, lower bound)".into(),
            buckets: buckets.clone(),
            count_label: "allocations".into(),
            series: vec![("allocations".into(), counts.clone())],
            scale: Scale::Linear,
        })?,
    )?;
    std::fs::write(
        dir.join("latency.svg"),
        histogram(&Histogram {
            title: "Allocator latency: example".into(),
            subtitle: None,
            x_label: "time inside the allocator".into(),
            buckets: (4..18)
                .map(|i| Unit::Nanos.format(f64::from(1u32 << i)))
                .collect(),
            count_label: "calls".into(),
            series: vec![
                (
                    "malloc".into(),
                    (4..18).map(|i| 1_000_000u64 >> i).collect(),
                ),
                ("free".into(), (4..18).map(|i| 300_000u64 >> i).collect()),
                (
                    "calloc".into(),
                    (4..18).map(|i| 3000u64 >> (i / 2)).collect(),
                ),
            ],
            scale: Scale::Log,
        })?,
    )?;
    let policies = [
        "first-fit",
        "next-fit",
        "best-fit",
        "worst-fit",
        "buddy",
        "slab",
        "compact",
        "semispace",
    ];
    std::fs::write(
        dir.join("policies.svg"),
        bars(&BarChart {
            title: "Allocator policies: example".into(),
            subtitle: None,
            x_label: "policy".into(),
            categories: policies.iter().map(|s| s.to_string()).collect(),
            panels: vec![
                BarPanel {
                    label: "bytes at peak".into(),
                    unit: Unit::Bytes,
                    scale: Scale::Linear,
                    series: vec![
                        BarSeries {
                            name: "peak footprint".into(),
                            values: (0..8)
                                .map(|i| Some(60000.0 + f64::from(i) * 3000.0))
                                .collect(),
                        },
                        BarSeries {
                            name: "live at peak".into(),
                            values: vec![Some(45920.0); 8],
                        },
                    ],
                },
                BarPanel {
                    label: "fragmentation at peak".into(),
                    unit: Unit::Ratio,
                    scale: Scale::Linear,
                    series: vec![
                        BarSeries {
                            name: "external".into(),
                            values: (0..8).map(|i| Some(f64::from(i) / 20.0)).collect(),
                        },
                        BarSeries {
                            name: "internal".into(),
                            values: (0..8)
                                .map(|i| {
                                    if i == 3 {
                                        None
                                    } else {
                                        Some(f64::from(i) / 30.0)
                                    }
                                })
                                .collect(),
                        },
                    ],
                },
            ],
            touching: false,
            value_labels: false,
            groups: Vec::new(),
        })?,
    )?;
    std::fs::write(
        dir.join("skipped.svg"),
        skipped("Leaks by class", "tool not built yet (issue #4)")?,
    )?;
    Ok(())
}
