//! Each chart kind on small made-up data with known answers, read back
//! with roxmltree: texts, bars and their heights.

use memtrace_plot::*;

/// `(content, x, y)` of every `<text>`, and `(x, y, width, height, fill)` of every `<rect>`.
struct Parsed {
    texts: Vec<(String, f64, f64)>,
    rects: Vec<(f64, f64, f64, f64, String)>,
}

fn parse(svg: &str) -> Parsed {
    let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
    let f = |n: roxmltree::Node, a: &str| n.attribute(a).unwrap().parse::<f64>().unwrap();
    Parsed {
        texts: doc
            .descendants()
            .filter(|n| n.has_tag_name("text"))
            .map(|n| {
                (
                    n.text().unwrap_or_default().trim().to_string(),
                    f(n, "x"),
                    f(n, "y"),
                )
            })
            .collect(),
        rects: doc
            .descendants()
            .filter(|n| n.has_tag_name("rect"))
            .map(|n| {
                let fill = n.attribute("fill").unwrap().to_string();
                (f(n, "x"), f(n, "y"), f(n, "width"), f(n, "height"), fill)
            })
            .collect(),
    }
}

impl Parsed {
    fn has(&self, text: &str) -> bool {
        self.texts.iter().any(|t| t.0 == text)
    }
    fn bars(&self, fill: &str) -> Vec<(f64, f64)> {
        // Bars are taller than the 12-pixel legend swatches here.
        self.rects
            .iter()
            .filter(|r| r.4 == fill && r.3 > 12.0)
            .map(|r| (r.0, r.3))
            .collect()
    }
}

#[test]
fn a_histogram_draws_proportional_bars_with_their_counts_and_no_bar_for_zero() {
    let svg = histogram(&Histogram {
        title: "sizes".into(),
        subtitle: None,
        x_label: "requested size".into(),
        buckets: vec!["16 B".into(), "32 B".into(), "64 B".into()],
        count_label: "allocations".into(),
        series: vec![("allocations".into(), vec![100, 0, 200])],
        scale: Scale::Linear,
    })
    .unwrap();
    let p = parse(&svg);
    for t in [
        "sizes",
        "requested size",
        "allocations",
        "16 B",
        "32 B",
        "64 B",
        "100",
        "200",
    ] {
        assert!(p.has(t), "{t}");
    }
    let bars = p.bars("#1F77B4");
    assert_eq!(bars.len(), 2, "no bar for the empty bucket");
    // 200 is drawn twice as tall as 100, to the pixel.
    assert!((bars[1].1 - 2.0 * bars[0].1).abs() <= 1.0, "{bars:?}");
}

#[test]
fn grouped_bars_write_na_for_unmeasured_values_and_name_every_series() {
    let svg = bars(&BarChart {
        title: "misses".into(),
        subtitle: None,
        x_label: "fixture and phase".into(),
        categories: vec!["list".into(), "vec".into()],
        panels: vec![BarPanel {
            label: "misses".into(),
            unit: Unit::Count,
            scale: Scale::Log,
            series: vec![
                BarSeries {
                    name: "hardware".into(),
                    values: vec![None, None],
                },
                BarSeries {
                    name: "simulated".into(),
                    values: vec![Some(100_000.0), Some(100.0)],
                },
            ],
        }],
        touching: false,
        value_labels: false,
        groups: Vec::new(),
    })
    .unwrap();
    let p = parse(&svg);
    assert_eq!(p.texts.iter().filter(|t| t.0 == "n/a").count(), 2);
    for t in [
        "hardware",
        "simulated",
        "misses, log scale",
        "1",
        "10",
        "100",
        "1k",
        "100k",
    ] {
        assert!(p.has(t), "{t} in {:?}", p.texts);
    }
    // On a log scale from 10^-0.3, 10^5 stands (5 + 0.3) / (2 + 0.3) times as tall as 10^2.
    let b = p.bars("#FF7F0E");
    assert_eq!(b.len(), 2);
    assert!((b[0].1 / b[1].1 - 5.3 / 2.3).abs() < 0.02, "{b:?}");
}

#[test]
fn a_bar_chart_refuses_series_of_the_wrong_length() {
    let err = bars(&BarChart {
        title: "t".into(),
        subtitle: None,
        x_label: "x".into(),
        categories: vec!["a".into(), "b".into()],
        panels: vec![BarPanel {
            label: "y".into(),
            unit: Unit::Bytes,
            scale: Scale::Linear,
            series: vec![BarSeries {
                name: "s".into(),
                values: vec![Some(1.0)],
            }],
        }],
        touching: false,
        value_labels: false,
        groups: Vec::new(),
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "series \"s\" has 1 values for 2 categories"
    );
}

#[test]
fn a_timeline_labels_axes_in_human_units_and_lists_bands_in_its_legend() {
    let mib = 1048576.0;
    let svg = timeline(&Timeline {
        title: "swap".into(),
        subtitle: Some("worst interval at 1.2 s".into()),
        x_label: "time".into(),
        x_unit: Unit::Nanos,
        x_end: None,
        panels: vec![
            Panel {
                label: "memory".into(),
                unit: Unit::Bytes,
                series: vec![
                    Series {
                        name: "RSS".into(),
                        points: vec![(0.0, 0.0), (2e9, 64.0 * mib)],
                    },
                    Series {
                        name: "swap".into(),
                        points: vec![(0.0, 0.0), (2e9, 3.0 * mib)],
                    },
                ],
                filled: false,
            },
            Panel {
                label: "pressure full".into(),
                unit: Unit::Ratio,
                series: vec![Series {
                    name: "avg10".into(),
                    points: vec![(0.0, 0.0), (2e9, 0.4)],
                }],
                filled: false,
            },
        ],
        bands: vec![
            Band {
                start: 0.0,
                end: 1e9,
                label: "ok".into(),
                color: None,
            },
            Band {
                start: 1e9,
                end: 2e9,
                label: "thrashing".into(),
                color: Some((251, 154, 153)),
            },
        ],
        markers: vec![Marker {
            panel: 0,
            x: 2e9,
            y: 64.0 * mib,
            label: "64 MiB".into(),
        }],
    })
    .unwrap();
    let p = parse(&svg);
    for t in [
        "swap",
        "worst interval at 1.2 s",
        "RSS",
        "ok",
        "thrashing",
        "avg10",
        "memory (MiB)",
        "pressure full (%)",
        "time (s)",
        "64 MiB",
    ] {
        assert!(p.has(t), "{t} in {:?}", p.texts);
    }
    // The thrashing band is drawn in its own colour, across the panel.
    assert!(p.rects.iter().any(|r| r.4 == "#FB9A99" && r.3 > 100.0));
    let empty = Timeline {
        title: String::new(),
        subtitle: None,
        x_label: String::new(),
        x_unit: Unit::Nanos,
        x_end: None,
        panels: vec![],
        bands: vec![],
        markers: vec![],
    };
    assert_eq!(
        timeline(&empty).unwrap_err().to_string(),
        "a timeline needs at least one panel"
    );
}

#[test]
fn the_placeholder_says_skipped_and_why() {
    let p = parse(&skipped("Leaks by class", "tool not built yet").unwrap());
    let texts: Vec<&str> = p.texts.iter().map(|t| t.0.as_str()).collect();
    assert_eq!(texts, ["Leaks by class", "skipped: tool not built yet"]);
}

/// A phase of a microsecond in a run of a second is still drawn, 2 to 3 pixels
/// wide (3 before rounding), so that its legend entry points at something.
#[test]
fn a_band_too_short_to_see_is_drawn_a_few_pixels_wide() {
    let svg = timeline(&Timeline {
        title: "heap".into(),
        subtitle: None,
        x_label: "time".into(),
        x_unit: Unit::Nanos,
        x_end: None,
        panels: vec![Panel {
            label: "live heap".into(),
            unit: Unit::Bytes,
            series: vec![Series {
                name: "live heap".into(),
                points: vec![(0.0, 0.0), (1e9, 4096.0)],
            }],
            filled: true,
        }],
        bands: vec![Band {
            start: 5e8,
            end: 5e8 + 1e3,
            label: "phase setup".into(),
            color: Some((200, 100, 50)),
        }],
        markers: vec![],
    })
    .unwrap();
    let p = parse(&svg);
    // The band, not its 12-pixel legend swatch: as tall as the panel.
    let band: Vec<f64> = p
        .rects
        .iter()
        .filter(|r| r.4 == "#C86432" && r.3 > 100.0)
        .map(|r| r.2)
        .collect();
    assert_eq!(band.len(), 1, "{:?}", p.rects);
    assert!((2.0..=3.0).contains(&band[0]), "band {} px wide", band[0]);
}

fn paired(groups: Vec<CategoryGroup>) -> Result<String, PlotError> {
    bars(&BarChart {
        title: "misses per element".into(),
        subtitle: None,
        x_label: "layout".into(),
        categories: ["list", "array", "aos", "soa"].map(String::from).to_vec(),
        panels: vec![BarPanel {
            label: "D1 misses per element".into(),
            unit: Unit::Count,
            scale: Scale::Linear,
            series: vec![BarSeries {
                name: "D1".into(),
                values: vec![Some(4.5), Some(0.5), Some(5.0), Some(0.25)],
            }],
        }],
        touching: false,
        value_labels: true,
        groups,
    })
}

#[test]
fn paired_bars_name_each_pair_under_its_two_categories() {
    let svg = paired(vec![
        CategoryGroup {
            label: "list vs array".into(),
            n_categories: 2,
        },
        CategoryGroup {
            label: "AoS vs SoA".into(),
            n_categories: 2,
        },
    ])
    .unwrap();
    let p = parse(&svg);
    let x_of = |t: &str| {
        p.texts
            .iter()
            .find(|x| x.0 == t)
            .unwrap_or_else(|| panic!("{t} in {:?}", p.texts))
            .1
    };
    // Each pair's name is centred between its two category labels, below them.
    for (group, a, b) in [
        ("list vs array", "list", "array"),
        ("AoS vs SoA", "aos", "soa"),
    ] {
        assert!(
            (x_of(group) - (x_of(a) + x_of(b)) / 2.0).abs() <= 1.0,
            "{group}"
        );
        let y = |t: &str| p.texts.iter().find(|x| x.0 == t).unwrap().2;
        assert!(y(group) > y(a) + 12.0, "{group} under {a}");
    }
    // Fractions are written with two decimals at most, whole counts as such.
    for value in ["4.5", "0.5", "5", "0.25"] {
        assert!(p.has(value), "{value} in {:?}", p.texts);
    }
    // Bars in proportion, to the pixel: list 4.5, array 0.5, soa 0.25
    // against aos's 5.
    let b = p.bars("#1F77B4");
    assert_eq!(b.len(), 4, "{b:?}");
    for (i, value) in [(0, 4.5), (1, 0.5), (3, 0.25)] {
        assert!((b[i].1 - b[2].1 * value / 5.0).abs() <= 1.0, "{b:?}");
    }
}

#[test]
fn groups_must_cover_every_category() {
    let err = paired(vec![CategoryGroup {
        label: "list vs array".into(),
        n_categories: 2,
    }])
    .unwrap_err();
    assert_eq!(err.to_string(), "the groups hold 2 categories of 4");
}
