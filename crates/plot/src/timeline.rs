//! Timelines: one or more panels stacked over a shared time axis, each with
//! its own quantity and unit, lines (optionally filled down to zero), state
//! bands behind every panel, and labelled markers such as the peak.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::style::{self, Area, Axis, LegendEntry, FONT, INK, WIDTH};
use crate::units::{axis_ticks, linear_ticks, tick_label, Unit};
use crate::PlotError;

/// A named line: `(x, y)` points in the base units of the axes, x ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// One panel: a quantity with its unit, and the series that show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// What the y axis measures, without unit (`live heap`); the unit is added.
    pub label: String,
    /// Unit of the y values.
    pub unit: Unit,
    /// The lines.
    pub series: Vec<Series>,
    /// Fill the area under each line (for a single quantity such as the heap).
    pub filled: bool,
}

/// A span of time shaded behind all panels, such as a program phase or a
/// monitor's state. Bands with the same label share a colour and one legend entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    /// Start, in the x unit.
    pub start: f64,
    /// End, in the x unit.
    pub end: f64,
    /// Legend label (`ok`, `thrashing`, `phase build`).
    pub label: String,
    /// Colour as RGB; `None` picks one from the band palette.
    pub color: Option<(u8, u8, u8)>,
}

/// A point called out with a dot and a text, such as the peak.
#[derive(Debug, Clone, PartialEq)]
pub struct Marker {
    /// Index of the panel it belongs to.
    pub panel: usize,
    /// x, in the base unit.
    pub x: f64,
    /// y, in the base unit of the panel.
    pub y: f64,
    /// The text beside the dot.
    pub label: String,
}

/// A timeline chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Title.
    pub title: String,
    /// A line under the title (the key numbers), if any.
    pub subtitle: Option<String>,
    /// What the x axis measures, without unit (`time since the first event`).
    pub x_label: String,
    /// Unit of the x values.
    pub x_unit: Unit,
    /// Where the x axis ends at the least, in x units (a run's duration,
    /// when nothing happens in its last stretch); `None`: at the last
    /// point or band.
    pub x_end: Option<f64>,
    /// Panels from top to bottom.
    pub panels: Vec<Panel>,
    /// Shaded spans.
    pub bands: Vec<Band>,
    /// Called-out points.
    pub markers: Vec<Marker>,
}

const PANEL_HEIGHT: u32 = 300;
/// The narrowest a band is drawn, in pixels.
const MIN_BAND_PX: f64 = 3.0;
/// How far a panel with a marker reaches above its highest value, so that
/// the marker's label fits over the dot.
const MARKER_HEADROOM: f64 = 1.18;
const X_AXIS_HEIGHT: u32 = 50;

/// Draws a timeline as an SVG document.
pub fn timeline(t: &Timeline) -> Result<String, PlotError> {
    if t.panels.is_empty() {
        return Err(PlotError::new("a timeline needs at least one panel"));
    }
    // Colours: series numbered across panels; bands by first appearance of their label.
    let mut legend = Vec::new();
    let mut n_series = 0usize;
    for p in &t.panels {
        for s in &p.series {
            legend.push(LegendEntry {
                name: s.name.clone(),
                color: style::series_color(n_series),
                band: false,
            });
            n_series += 1;
        }
    }
    let mut band_labels: Vec<(String, RGBColor)> = Vec::new();
    for b in &t.bands {
        if !band_labels.iter().any(|(l, _)| *l == b.label) {
            let color = b.color.map_or_else(
                || style::band_color(band_labels.len()),
                |(r, g, b)| RGBColor(r, g, b),
            );
            band_labels.push((b.label.clone(), color));
            legend.push(LegendEntry {
                name: b.label.clone(),
                color,
                band: true,
            });
        }
    }
    if band_labels.is_empty() && t.panels.iter().all(|p| p.series.len() <= 1) {
        legend.clear(); // one line per panel needs no legend: its axis says what it is
    }

    let x_max = t
        .panels
        .iter()
        .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)))
        .chain(t.bands.iter().map(|b| b.end))
        .chain(t.x_end)
        .fold(0.0f64, f64::max);
    let x_scale = t.x_unit.scale_for(x_max);
    let (x_ticks, x_decimals) = linear_ticks(x_max / x_scale.divisor, 10);
    let x_hi = *x_ticks.last().expect("ticks");

    let header = style::header_height(t.subtitle.as_deref(), style::legend_rows(&legend).len());
    let height = header + PANEL_HEIGHT * t.panels.len() as u32 + X_AXIS_HEIGHT;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let body = style::draw_header(&root, &t.title, t.subtitle.as_deref(), &legend)?;
        let n = t.panels.len();
        let mut rest = body;
        let mut color_index = 0;
        for (i, panel) in t.panels.iter().enumerate() {
            let last = i + 1 == n;
            let h = PANEL_HEIGHT + if last { X_AXIS_HEIGHT } else { 0 };
            let (area, below) = rest.split_vertically(h);
            rest = below;
            let ctx = PanelContext {
                x_scale: x_scale.divisor,
                x_ticks: &x_ticks,
                x_decimals,
                x_hi,
                x_unit: t.x_unit,
                x_desc: if last {
                    Some(t.x_unit.axis_label(&t.x_label, x_scale))
                } else {
                    None
                },
                bands: &t.bands,
                band_labels: &band_labels,
                markers: t.markers.iter().filter(|m| m.panel == i).collect(),
                first_color: color_index,
            };
            draw_panel(&area, panel, &ctx)?;
            color_index += panel.series.len();
        }
        root.present()?;
    }
    Ok(svg)
}

struct PanelContext<'a> {
    x_scale: f64,
    x_ticks: &'a [f64],
    x_decimals: usize,
    x_hi: f64,
    x_unit: Unit,
    x_desc: Option<String>,
    bands: &'a [Band],
    band_labels: &'a [(String, RGBColor)],
    markers: Vec<&'a Marker>,
    first_color: usize,
}

fn draw_panel(area: &Area, panel: &Panel, ctx: &PanelContext) -> Result<(), PlotError> {
    let y_max = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(ctx.markers.iter().map(|m| m.y))
        .fold(0.0f64, f64::max);
    let y_scale = panel.unit.scale_for(y_max);
    // Room above a marker for its label, which sits over the dot: a peak is
    // the top of its line, so nothing of that line runs through the text.
    let headroom = if ctx.markers.is_empty() {
        1.0
    } else {
        MARKER_HEADROOM
    };
    let (y_ticks, y_decimals) = axis_ticks(y_max * headroom / y_scale.divisor, 6, panel.unit);
    let y_hi = *y_ticks.last().expect("ticks");
    let unit = panel.unit;

    let mut chart = ChartBuilder::on(area)
        .margin_left(10)
        .margin_right(30)
        .margin_top(10)
        .x_label_area_size(if ctx.x_desc.is_some() { 50 } else { 30 })
        .y_label_area_size(80)
        .build_cartesian_2d(
            Axis::new(0.0, ctx.x_hi, ctx.x_ticks.to_vec()),
            Axis::new(0.0, y_hi, y_ticks.clone()),
        )?;
    let x_decimals = ctx.x_decimals;
    let x_unit = ctx.x_unit;
    let x_ticks = ctx.x_ticks.to_vec();
    let x_fmt = move |v: &f64| tick_label(*v, x_decimals, x_unit, &x_ticks);
    let y_tick_values = y_ticks.clone();
    let y_fmt = move |v: &f64| tick_label(*v, y_decimals, unit, &y_tick_values);
    let y_desc = panel.unit.axis_label(&panel.label, y_scale);
    let mut mesh = chart.configure_mesh();
    mesh.x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .y_desc(y_desc)
        .label_style(style::tick_style())
        .axis_desc_style(style::axis_desc_style())
        .bold_line_style(RGBColor(220, 220, 220))
        .axis_style(INK);
    if let Some(d) = &ctx.x_desc {
        mesh.x_desc(d.clone());
    }
    mesh.draw()?;

    for b in ctx.bands {
        let color = ctx
            .band_labels
            .iter()
            .find(|(l, _)| *l == b.label)
            .map_or(style::band_color(0), |(_, c)| *c);
        let (x0, x1) = (b.start / ctx.x_scale, b.end / ctx.x_scale);
        // A band shorter than the chart can show is drawn 3 px wide: a
        // legend entry must have something to point at.
        let width_px = f64::from(chart.plotting_area().dim_in_pixel().0.max(1));
        let x1 = x1.max(x0 + MIN_BAND_PX * ctx.x_hi / width_px);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x0, 0.0), (x1, y_hi)],
            color.mix(0.45).filled(),
        )))?;
    }

    for (k, s) in panel.series.iter().enumerate() {
        let color = style::series_color(ctx.first_color + k);
        let points: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|(x, y)| (x / ctx.x_scale, y / y_scale.divisor))
            .collect();
        if panel.filled {
            chart.draw_series(
                AreaSeries::new(points, 0.0, color.mix(0.25)).border_style(color.stroke_width(2)),
            )?;
        } else {
            chart.draw_series(LineSeries::new(points, color.stroke_width(2)))?;
        }
    }

    for m in &ctx.markers {
        let point = (m.x / ctx.x_scale, m.y / y_scale.divisor);
        chart.draw_series(std::iter::once(Circle::new(point, 5, INK.filled())))?;
        let (px, py) = chart.backend_coord(&point);
        let right_half = m.x / ctx.x_scale > ctx.x_hi / 2.0;
        let (anchor, dx) = if right_half {
            (HPos::Right, 4)
        } else {
            (HPos::Left, -4)
        };
        let style = TextStyle::from((FONT, 17).into_font().style(FontStyle::Bold))
            .color(&INK)
            .pos(Pos::new(anchor, VPos::Bottom));
        // The root's coordinates equal the backend's (the root starts at 0,0);
        // `area` is shifted, so draw on a root-based offset.
        let (ax, ay) = area.get_base_pixel();
        area.draw_text(&m.label, &style, (px + dx - ax, py - 10 - ay))?;
    }
    Ok(())
}
