//! Bar charts over named categories: grouped bars (one bar per series in
//! each category, such as footprint per allocator policy) and histograms
//! (touching bars over buckets), each panel on a linear or log scale.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use crate::style::{self, Area, Axis, LegendEntry, FONT, INK, TICK_SIZE, VALUE_SIZE, WIDTH};
use crate::units::{axis_ticks, log_tick_label, log_ticks, tick_label, Unit};
use crate::PlotError;

/// How a panel's y axis maps values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Linear from zero.
    Linear,
    /// Powers of ten (for counts that span orders of magnitude); zero draws no bar.
    Log,
}

/// One series: a value per category, `None` where it was not measured
/// (drawn as `n/a`, never as zero).
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// Legend name.
    pub name: String,
    /// Values in the panel's base unit, one per category.
    pub values: Vec<Option<f64>>,
}

/// One panel of bars: a quantity, its unit, its scale and its series.
#[derive(Debug, Clone, PartialEq)]
pub struct BarPanel {
    /// What the y axis measures, without unit.
    pub label: String,
    /// Unit of the values.
    pub unit: Unit,
    /// Linear or log.
    pub scale: Scale,
    /// The series; every one has a value per category.
    pub series: Vec<BarSeries>,
}

/// A chart of bars over categories, with one or more panels stacked over
/// the same categories.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Title.
    pub title: String,
    /// A line under the title, if any.
    pub subtitle: Option<String>,
    /// What the categories are (the x axis description).
    pub x_label: String,
    /// Category names, left to right.
    pub categories: Vec<String>,
    /// Panels, top to bottom.
    pub panels: Vec<BarPanel>,
    /// Bars touch (a histogram) instead of standing in groups.
    pub touching: bool,
    /// Write each bar's value above it (when the bars are wide enough).
    pub value_labels: bool,
    /// Runs of adjacent categories named together under their labels (the
    /// two sides of a comparison), separated by a thin line; empty for none.
    pub groups: Vec<CategoryGroup>,
}

/// Adjacent categories named together under the x axis, such as the two
/// layouts a comparison puts side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct CategoryGroup {
    /// The name written under the group's category labels.
    pub label: String,
    /// How many categories it holds, from where the previous group ended.
    pub n_categories: usize,
}

/// A histogram: counts per bucket, one series or several side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Title.
    pub title: String,
    /// A line under the title, if any.
    pub subtitle: Option<String>,
    /// What the buckets measure, without unit (`requested size`).
    pub x_label: String,
    /// Bucket names, left to right.
    pub buckets: Vec<String>,
    /// What is counted (`allocations`).
    pub count_label: String,
    /// Counts per bucket, per series.
    pub series: Vec<(String, Vec<u64>)>,
    /// Linear or log counts.
    pub scale: Scale,
}

const PANEL_HEIGHT: u32 = 320;

/// Draws a histogram as an SVG document: touching bars, counts written
/// above them when they fit.
pub fn histogram(h: &Histogram) -> Result<String, PlotError> {
    bars(&BarChart {
        title: h.title.clone(),
        subtitle: h.subtitle.clone(),
        x_label: h.x_label.clone(),
        categories: h.buckets.clone(),
        panels: vec![BarPanel {
            label: h.count_label.clone(),
            unit: Unit::Count,
            scale: h.scale,
            series: h
                .series
                .iter()
                .map(|(name, counts)| BarSeries {
                    name: name.clone(),
                    values: counts.iter().map(|&c| Some(c as f64)).collect(),
                })
                .collect(),
        }],
        touching: true,
        value_labels: true,
        groups: Vec::new(),
    })
}

/// Draws a bar chart as an SVG document.
pub fn bars(c: &BarChart) -> Result<String, PlotError> {
    if c.panels.is_empty() || c.categories.is_empty() {
        return Err(PlotError::new("a bar chart needs a panel and a category"));
    }
    for p in &c.panels {
        if let Some(s) = p
            .series
            .iter()
            .find(|s| s.values.len() != c.categories.len())
        {
            return Err(PlotError::new(&format!(
                "series {:?} has {} values for {} categories",
                s.name,
                s.values.len(),
                c.categories.len()
            )));
        }
    }
    let grouped: usize = c.groups.iter().map(|g| g.n_categories).sum();
    if !c.groups.is_empty() && grouped != c.categories.len() {
        return Err(PlotError::new(&format!(
            "the groups hold {grouped} categories of {}",
            c.categories.len()
        )));
    }
    let mut legend = Vec::new();
    let mut n_series = 0;
    for p in &c.panels {
        for s in &p.series {
            legend.push(LegendEntry {
                name: s.name.clone(),
                color: style::series_color(n_series),
                band: false,
            });
            n_series += 1;
        }
    }
    if n_series == 1 {
        legend.clear();
    }

    // Category labels: horizontal when they fit their slot, else vertical.
    let plot_width = f64::from(WIDTH) - 120.0;
    let slot = plot_width / c.categories.len() as f64;
    let widest = c
        .categories
        .iter()
        .map(|l| style::text_width(l, TICK_SIZE))
        .fold(0.0, f64::max);
    let vertical = widest > slot - 4.0;
    let label_band = if vertical {
        (widest as u32 + 8).min(180)
    } else {
        24
    };
    let group_band = if c.groups.is_empty() { 0 } else { GROUP_ROW };
    let x_axis_height = label_band + group_band + 30;

    let header = style::header_height(c.subtitle.as_deref(), style::legend_rows(&legend).len());
    let height = header + PANEL_HEIGHT * c.panels.len() as u32 + x_axis_height;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut rest = style::draw_header(&root, &c.title, c.subtitle.as_deref(), &legend)?;
        let mut first_color = 0;
        let n = c.panels.len();
        for (i, panel) in c.panels.iter().enumerate() {
            let last = i + 1 == n;
            let h = PANEL_HEIGHT + if last { x_axis_height } else { 0 };
            let (area, below) = rest.split_vertically(h);
            rest = below;
            let axis = if last {
                Some(XAxis {
                    label_band,
                    group_band,
                    vertical,
                    desc: &c.x_label,
                })
            } else {
                None
            };
            draw_panel(&area, c, panel, first_color, axis)?;
            first_color += panel.series.len();
        }
        root.present()?;
    }
    Ok(svg)
}

/// Height of the row of group names under the category labels.
const GROUP_ROW: u32 = 28;

struct XAxis<'a> {
    label_band: u32,
    group_band: u32,
    vertical: bool,
    desc: &'a str,
}

fn draw_panel(
    area: &Area,
    c: &BarChart,
    panel: &BarPanel,
    first_color: usize,
    axis: Option<XAxis>,
) -> Result<(), PlotError> {
    let n_cat = c.categories.len();
    let max = panel
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let unit = panel.unit;
    let y_scale = unit.scale_for(max);
    let log = panel.scale == Scale::Log;
    // A log panel plots log10(value); its bars rise from 10^-0.3 so that a count of 1 shows.
    let (y_ticks, y_decimals, y_lo) = if log {
        (log_ticks(max / y_scale.divisor), 0, -0.3)
    } else {
        let (t, d) = axis_ticks(max / y_scale.divisor, 6, unit);
        (t, d, 0.0)
    };
    let y_hi = *y_ticks.last().expect("ticks");
    let to_y = move |v: f64| -> Option<f64> {
        let shown = v / y_scale.divisor;
        if log {
            (shown > 0.0).then(|| shown.log10())
        } else {
            Some(shown)
        }
    };

    let x_area = axis
        .as_ref()
        .map_or(10, |a| a.label_band + a.group_band + 30);
    let mut chart = ChartBuilder::on(area)
        .margin_left(10)
        .margin_right(30)
        .margin_top(10)
        .x_label_area_size(x_area)
        .y_label_area_size(80)
        .build_cartesian_2d(
            Axis::new(0.0, n_cat as f64, Vec::new()),
            Axis::new(y_lo, y_hi, y_ticks.clone()),
        )?;
    let y_tick_values = y_ticks.clone();
    let y_fmt = move |v: &f64| {
        if log {
            log_tick_label(*v)
        } else {
            tick_label(*v, y_decimals, unit, &y_tick_values)
        }
    };
    let mut desc = unit.axis_label(&panel.label, y_scale);
    if log {
        desc.push_str(", log scale");
    }
    chart
        .configure_mesh()
        .y_label_formatter(&y_fmt)
        .y_desc(desc)
        .disable_x_mesh()
        .label_style(style::tick_style())
        .axis_desc_style(style::axis_desc_style())
        .bold_line_style(RGBColor(220, 220, 220))
        .axis_style(INK)
        .draw()?;

    // A thin line between neighbouring groups of categories.
    let mut edge = 0;
    for g in c.groups.iter().take(c.groups.len().saturating_sub(1)) {
        edge += g.n_categories;
        let x = edge as f64;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, y_lo), (x, y_hi)],
            RGBColor(160, 160, 160),
        )))?;
    }

    let n_series = panel.series.len().max(1);
    let group = if c.touching { 0.94 } else { 0.8 };
    let bar_w = group / n_series as f64;
    let (ax, ay) = area.get_base_pixel();
    let bar_px = {
        let a = chart.backend_coord(&(0.0, y_lo)).0;
        let b = chart.backend_coord(&(bar_w, y_lo)).0;
        b - a
    };
    let value_style = TextStyle::from((FONT, VALUE_SIZE).into_font())
        .color(&INK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    for (k, s) in panel.series.iter().enumerate() {
        let color = style::series_color(first_color + k);
        for (i, v) in s.values.iter().enumerate() {
            let x0 = i as f64 + (1.0 - group) / 2.0 + k as f64 * bar_w;
            let x1 = x0 + bar_w;
            let Some(v) = v else {
                let (px, py) = chart.backend_coord(&((x0 + x1) / 2.0, y_lo));
                area.draw_text("n/a", &value_style, (px - ax, py - ay - 2))?;
                continue;
            };
            // A zero draws nothing (an empty bucket), unlike a missing value.
            let Some(top) = to_y(*v).filter(|_| *v > 0.0) else {
                continue;
            };
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, y_lo), (x1, top)],
                color.filled(),
            )))?;
            let text = if unit == Unit::Count {
                bar_count(*v)
            } else {
                unit.format(*v)
            };
            if c.value_labels && style::text_width(&text, VALUE_SIZE) <= f64::from(bar_px) + 2.0 {
                let (px, py) = chart.backend_coord(&((x0 + x1) / 2.0, top));
                area.draw_text(&text, &value_style, (px - ax, py - ay - 2))?;
            }
        }
    }

    if let Some(axis) = axis {
        let (_, base) = chart.backend_coord(&(0.0, y_lo));
        for (i, name) in c.categories.iter().enumerate() {
            let (px, _) = chart.backend_coord(&(i as f64 + 0.5, y_lo));
            let (x, y) = (px - ax, base - ay + 6);
            if axis.vertical {
                let style = TextStyle::from(
                    (FONT, TICK_SIZE)
                        .into_font()
                        .transform(FontTransform::Rotate270),
                )
                .color(&INK)
                .pos(Pos::new(HPos::Right, VPos::Center));
                area.draw_text(name, &style, (x, y))?;
            } else {
                let style = TextStyle::from((FONT, TICK_SIZE).into_font())
                    .color(&INK)
                    .pos(Pos::new(HPos::Center, VPos::Top));
                area.draw_text(name, &style, (x, y))?;
            }
        }
        let groups_y = base - ay + axis.label_band as i32 + 6;
        let x_px = |x: f64| chart.backend_coord(&(x, y_lo)).0;
        draw_groups(area, &x_px, &c.groups, (ax, groups_y))?;
        let (left, _) = chart.backend_coord(&(0.0, y_lo));
        let (right, _) = chart.backend_coord(&(n_cat as f64, y_lo));
        let style = style::axis_desc_style().pos(Pos::new(HPos::Center, VPos::Top));
        area.draw_text(
            axis.desc,
            &style,
            ((left + right) / 2 - ax, groups_y + axis.group_band as i32),
        )?;
    }
    Ok(())
}

/// Writes each group's name under its categories, below a bracket that
/// spans them; `(ax, y)` is the area's left edge and the row's top.
fn draw_groups(
    area: &Area,
    x_px: &dyn Fn(f64) -> i32,
    groups: &[CategoryGroup],
    (ax, y): (i32, i32),
) -> Result<(), PlotError> {
    let style = TextStyle::from((FONT, TICK_SIZE).into_font())
        .color(&INK)
        .pos(Pos::new(HPos::Center, VPos::Top));
    let mut start = 0;
    for g in groups {
        let end = start + g.n_categories;
        let (left, right) = (x_px(start as f64) - ax + 8, x_px(end as f64) - ax - 8);
        area.draw(&PathElement::new(
            vec![(left, y), (left, y + 4), (right, y + 4), (right, y)],
            INK,
        ))?;
        area.draw_text(&g.label, &style, ((left + right) / 2, y + 7))?;
        start = end;
    }
    Ok(())
}

/// A counted value written on its bar: whole counts exactly, a fraction
/// (misses per element) with two decimals at most.
fn bar_count(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}
