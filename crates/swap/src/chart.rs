//! The SVG timeline chart: RSS and swap, major faults per second and memory
//! pressure, one panel each over a shared time axis, with the verdict of
//! each interval as a coloured band behind every panel.
//!
//! Drawn with plotters' SVG backend without its font features: text becomes
//! SVG `<text>` elements that the viewer renders, so no font library is
//! needed (label widths are estimated).

use plotters::prelude::*;

use crate::{Interval, Sample, State};

/// Chart size in pixels.
const WIDTH: u32 = 1000;
const HEIGHT: u32 = 760;

/// The band colour of a state (ok has none).
pub fn state_color(state: State) -> Option<RGBColor> {
    match state {
        State::Ok => None,
        State::Reclaiming => Some(RGBColor(255, 236, 153)),
        State::Swapping => Some(RGBColor(255, 190, 120)),
        State::Thrashing => Some(RGBColor(240, 128, 128)),
    }
}

/// One line of a panel.
struct Series {
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Draws the timeline of `samples` (with their `intervals` and `states`)
/// as an SVG document titled `title`.
pub fn render_svg(
    title: &str,
    samples: &[Sample],
    intervals: &[Interval],
    states: &[State],
) -> Result<String, String> {
    let mut svg = String::new();
    draw(&mut svg, title, samples, intervals, states).map_err(|e| e.to_string())?;
    Ok(svg)
}

fn draw(
    svg: &mut String,
    title: &str,
    samples: &[Sample],
    intervals: &[Interval],
    states: &[State],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(60);
    header.draw(&Text::new(
        title.to_owned(),
        (20, 10),
        ("sans-serif", 20).into_font(),
    ))?;
    let mut x = 20;
    for state in State::ALL {
        let color = state_color(state).unwrap_or(WHITE);
        header.draw(&Rectangle::new(
            [(x, 38), (x + 14, 52)],
            ShapeStyle::from(color).filled(),
        ))?;
        header.draw(&Rectangle::new(
            [(x, 38), (x + 14, 52)],
            BLACK.stroke_width(1),
        ))?;
        header.draw(&Text::new(
            state.name(),
            (x + 20, 38),
            ("sans-serif", 14).into_font(),
        ))?;
        x += 120;
    }

    let secs = |ms: u64| ms as f64 / 1000.0;
    let t_end = samples.last().map_or(1.0, |s| secs(s.t_ms)).max(0.001);
    let at = |f: &dyn Fn(&Sample) -> f64| -> Vec<(f64, f64)> {
        samples.iter().map(|s| (secs(s.t_ms), f(s))).collect()
    };
    let per_interval = |f: &dyn Fn(&Interval) -> Option<f64>| -> Vec<(f64, f64)> {
        intervals
            .iter()
            .filter_map(|i| f(i).map(|v| (secs(i.end_ms), v)))
            .collect()
    };
    let panels: [(&str, Vec<Series>); 3] = [
        (
            "memory (MiB)",
            vec![
                Series {
                    label: "RSS",
                    color: RGBColor(31, 119, 180),
                    points: at(&|s| s.rss_kib() as f64 / 1024.0),
                },
                Series {
                    label: "swap",
                    color: RGBColor(214, 39, 40),
                    points: at(&|s| s.swap_kib as f64 / 1024.0),
                },
            ],
        ),
        (
            "major faults per second",
            vec![Series {
                label: "major faults/s",
                color: RGBColor(148, 103, 189),
                points: per_interval(&|i| Some(i.majflt_per_s)),
            }],
        ),
        (
            "memory pressure (% of interval stalled)",
            vec![
                Series {
                    label: "some",
                    color: RGBColor(255, 127, 14),
                    points: per_interval(&|i| i.some_pct),
                },
                Series {
                    label: "full",
                    color: RGBColor(44, 160, 44),
                    points: per_interval(&|i| i.full_pct),
                },
            ],
        ),
    ];

    for (area, (caption, series)) in body.split_evenly((3, 1)).iter().zip(panels) {
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0_f64, f64::max);
        let y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..t_end, 0.0..y_max)?;
        chart.draw_series(intervals.iter().zip(states).filter_map(|(i, &state)| {
            state_color(state).map(|color| {
                Rectangle::new(
                    [(secs(i.start_ms), 0.0), (secs(i.end_ms), y_max)],
                    ShapeStyle::from(color).filled(),
                )
            })
        }))?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for s in series {
            let color = s.color;
            chart
                .draw_series(LineSeries::new(s.points, color.stroke_width(2)))?
                .label(s.label)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
