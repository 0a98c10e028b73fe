//! An SVG bar chart of misses per fixture or phase, labelled with where the
//! numbers come from (hardware counters, or cachegrind's simulation).
//!
//! Drawn with plotters' SVG backend and its built-in text layout: no system
//! fonts are read.

use plotters::prelude::*;

use crate::counters::EventKind;
use crate::findings::Findings;

/// One group of bars (a fixture, phase or function) with one value per series.
#[derive(Debug, Clone, PartialEq)]
pub struct BarGroup {
    /// The group's label on the x axis.
    pub label: String,
    /// `(series name, value)`; a series absent from a group is not drawn.
    pub values: Vec<(String, u64)>,
}

/// What to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct MissChart {
    /// The chart title.
    pub title: String,
    /// Where the numbers come from, e.g. `simulated (cachegrind)`; shown in
    /// the title and on the y axis.
    pub source: String,
    /// The bar groups, left to right.
    pub groups: Vec<BarGroup>,
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

impl MissChart {
    /// The series names, in first-seen order.
    pub fn series(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for g in &self.groups {
            for (name, _) in &g.values {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// Renders the chart as an SVG document.
    pub fn to_svg(&self) -> Result<String, String> {
        let mut svg = String::new();
        {
            let width = (160 + 110 * self.groups.len().max(1)) as u32;
            let root = SVGBackend::with_string(&mut svg, (width.max(640), 420)).into_drawing_area();
            self.draw(&root).map_err(|e| e.to_string())?;
            root.present().map_err(|e| e.to_string())?;
        }
        Ok(svg)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, plotters::coord::Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        root.fill(&WHITE)?;
        let series = self.series();
        let n_series = series.len().max(1);
        let n_groups = self.groups.len().max(1);
        let max = self
            .groups
            .iter()
            .flat_map(|g| g.values.iter().map(|(_, v)| *v))
            .max()
            .unwrap_or(1)
            .max(1);
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!("{} [{}]", self.title, self.source),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..n_groups as f64, 0f64..max as f64 * 1.1)?;
        let labels: Vec<String> = self.groups.iter().map(|g| short_label(&g.label)).collect();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n_groups * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                let centred = (x - x.floor() - 0.5).abs() < 1e-6;
                if centred {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(format!("misses ({})", self.source))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        let bar_width = 0.8 / n_series as f64;
        for (s, name) in series.iter().enumerate() {
            let color = COLORS[s % COLORS.len()];
            let bars = self.groups.iter().enumerate().filter_map(|(g, group)| {
                let value = group.values.iter().find(|(n, _)| n == name)?.1;
                let x0 = g as f64 + 0.1 + s as f64 * bar_width;
                Some(Rectangle::new(
                    [(x0, 0.0), (x0 + bar_width * 0.9, value as f64)],
                    color.filled(),
                ))
            });
            chart
                .draw_series(bars)?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
}

/// The longest x-axis label that fits under a group's bars.
const MAX_LABEL: usize = 20;

/// `label`, cut to [`MAX_LABEL`] characters with an ellipsis, so that long
/// function names do not run into their neighbours.
fn short_label(label: &str) -> String {
    if label.chars().count() <= MAX_LABEL {
        label.to_string()
    } else {
        let cut: String = label.chars().take(MAX_LABEL - 1).collect();
        format!("{cut}…")
    }
}

/// The miss events a chart shows, in order.
const MISS_EVENTS: [EventKind; 4] = [
    EventKind::L1dLoadMisses,
    EventKind::LlcLoadMisses,
    EventKind::CacheMisses,
    EventKind::DtlbLoadMisses,
];

impl MissChart {
    /// The chart of `f`: misses per phase where hardware counted them in
    /// the recorder; else hardware totals for the run; else simulated
    /// misses per function, `top` of them (the fixtures keep each pattern
    /// in its own function). `program` is the command line for the title.
    /// `None` when no miss was measured or simulated.
    pub fn plan(f: &Findings, program: &str, top: usize) -> Option<MissChart> {
        let program = program.to_string();
        let phase_groups: Vec<BarGroup> = f
            .phases
            .iter()
            .flatten()
            .filter_map(|p| {
                let values: Vec<(String, u64)> = MISS_EVENTS
                    .into_iter()
                    .filter_map(|k| {
                        let (_, outcome) = p.perf.iter().find(|(kind, _)| *kind == k)?;
                        Some((k.name().to_string(), outcome.value()?))
                    })
                    .collect();
                (!values.is_empty()).then(|| BarGroup {
                    label: p.name.clone(),
                    values,
                })
            })
            .collect();
        if !phase_groups.is_empty() {
            return Some(MissChart {
                title: format!("misses per phase of {program}"),
                source: "hardware counters, per phase".into(),
                groups: phase_groups,
            });
        }
        if let Some(run) = f.counted.as_ref().filter(|r| r.any_hardware()) {
            let values: Vec<(String, u64)> = MISS_EVENTS
                .into_iter()
                .filter_map(|k| Some((k.name().to_string(), run.value(k)?)))
                .collect();
            if !values.is_empty() {
                return Some(MissChart {
                    title: format!("misses of {program}"),
                    source: "hardware counters".into(),
                    groups: vec![BarGroup {
                        label: program,
                        values,
                    }],
                });
            }
        }
        let Some(Ok(sim)) = &f.simulated else {
            return None;
        };
        let mut groups = vec![BarGroup {
            label: "whole run".into(),
            values: vec![
                ("D1 misses".into(), sim.total.d1_misses()),
                ("LL misses".into(), sim.total.ll_misses()),
            ],
        }];
        groups.extend(sim.functions.iter().take(top).map(|(name, c)| BarGroup {
            label: name.clone(),
            values: vec![
                ("D1 misses".into(), c.d1_misses()),
                ("LL misses".into(), c.ll_misses()),
            ],
        }));
        Some(MissChart {
            title: format!("misses per function of {program}"),
            source: "simulated (cachegrind)".into(),
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_labels_are_cut_with_an_ellipsis() {
        assert_eq!(super::short_label("traverse_list"), "traverse_list");
        assert_eq!(
            super::short_label("__memset_avx2_unaligned_erms"),
            "__memset_avx2_unali…"
        );
    }

    use super::*;

    #[test]
    fn draws_one_bar_per_value_and_names_the_source() {
        let chart = MissChart {
            title: "D1 misses per fixture".into(),
            source: "simulated (cachegrind)".into(),
            groups: vec![
                BarGroup {
                    label: "list".into(),
                    values: vec![("D1".into(), 300), ("LL".into(), 40)],
                },
                BarGroup {
                    label: "array".into(),
                    values: vec![("D1".into(), 7)],
                },
            ],
        };
        let svg = chart.to_svg().unwrap();
        let doc = svg.as_str();
        assert!(doc.starts_with("<svg"));
        assert_eq!(chart.series(), ["D1", "LL"]);
        // Three bars, plus two legend swatches, are filled with the series colours.
        let blue = doc.matches(r##"fill="#1F77B4""##).count();
        let orange = doc.matches(r##"fill="#FF7F0E""##).count();
        assert_eq!((blue, orange), (3, 2));
        assert_eq!(doc.matches("[simulated (cachegrind)]").count(), 1);
        // Text elements hold their text on a line of its own.
        for label in ["list", "array", "D1", "LL"] {
            assert_eq!(doc.matches(&format!("\n{label}\n")).count(), 1, "{label}");
        }
    }
}
