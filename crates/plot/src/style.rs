//! Colours, fonts and the frame every chart shares: a title, an optional
//! subtitle and a legend row above the plotting panels.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::PlotError;

/// The drawing area charts draw on.
pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Font family of every text (the browser picks the face).
pub(crate) const FONT: &str = "sans-serif";
// Sizes as given to plotters, whose SVG backend writes `size / 1.24` as the
// font size: a tick label of 16 is drawn at 12.9 px.
/// Tick labels.
pub(crate) const TICK_SIZE: f64 = 16.0;
/// Values written on bars.
pub(crate) const VALUE_SIZE: f64 = 15.0;
/// Legend entries.
pub(crate) const LEGEND_SIZE: f64 = 17.0;
/// Axis descriptions.
const AXIS_DESC_SIZE: f64 = 18.0;
/// Titles.
const TITLE_SIZE: f64 = 27.0;
/// Chart width in pixels.
pub(crate) const WIDTH: u32 = 960;

/// Series colours (Tableau 10: distinct, readable on white, colour-blind safe order).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Light band colours, for background state bands.
const BAND_PALETTE: [RGBColor; 6] = [
    RGBColor(166, 206, 227),
    RGBColor(178, 223, 138),
    RGBColor(253, 191, 111),
    RGBColor(251, 154, 153),
    RGBColor(202, 178, 214),
    RGBColor(255, 255, 153),
];

/// The `i`-th series colour.
pub(crate) fn series_color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// The `i`-th band colour.
pub(crate) fn band_color(i: usize) -> RGBColor {
    BAND_PALETTE[i % BAND_PALETTE.len()]
}

/// Dark grey for text and axes.
pub(crate) const INK: RGBColor = RGBColor(40, 40, 40);

/// One legend entry: a colour swatch and its name.
pub(crate) struct LegendEntry {
    pub name: String,
    pub color: RGBColor,
    /// Drawn as a faint band swatch rather than a solid one.
    pub band: bool,
}

/// Height of the title block for a chart with its subtitle and legend rows.
pub(crate) fn header_height(subtitle: Option<&str>, legend_rows: usize) -> u32 {
    48 + 22 * subtitle.map_or(0, |s| wrap(s, SUBTITLE_SIZE).len()) as u32 + 26 * legend_rows as u32
}

/// Subtitle font size.
const SUBTITLE_SIZE: f64 = 18.0;

/// `text` broken at spaces into lines that fit the chart width.
pub(crate) fn wrap(text: &str, size: f64) -> Vec<String> {
    let max = f64::from(WIDTH) - 60.0;
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if !line.is_empty() && text_width(&candidate, size) > max {
            lines.push(std::mem::replace(&mut line, word.to_string()));
        } else {
            line = candidate;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Estimated pixel width of `text` at `size` px (the SVG has no font metrics).
pub(crate) fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.56
}

/// Legend entries laid out in rows that fit the chart width.
pub(crate) fn legend_rows(entries: &[LegendEntry]) -> Vec<Vec<&LegendEntry>> {
    let mut rows: Vec<Vec<&LegendEntry>> = Vec::new();
    let mut x = 0.0;
    for e in entries {
        let w = 30.0 + text_width(&e.name, LEGEND_SIZE);
        if rows.is_empty() || x + w > f64::from(WIDTH) - 80.0 {
            rows.push(Vec::new());
            x = 0.0;
        }
        x += w;
        rows.last_mut().expect("a row").push(e);
    }
    rows
}

/// Draws the title, subtitle and legend on top of `root`; returns the rest.
pub(crate) fn draw_header<'a>(
    root: &Area<'a>,
    title: &str,
    subtitle: Option<&str>,
    legend: &[LegendEntry],
) -> Result<Area<'a>, PlotError> {
    let rows = legend_rows(legend);
    let height = header_height(subtitle, rows.len());
    let (top, rest) = root.split_vertically(height);
    let center = Pos::new(HPos::Center, VPos::Top);
    let title_style = TextStyle::from((FONT, TITLE_SIZE).into_font())
        .color(&INK)
        .pos(center);
    top.draw_text(title, &title_style, (WIDTH as i32 / 2, 10))?;
    let mut y = 44;
    if let Some(sub) = subtitle {
        let style = TextStyle::from((FONT, SUBTITLE_SIZE).into_font())
            .color(&RGBColor(90, 90, 90))
            .pos(center);
        for line in wrap(sub, SUBTITLE_SIZE) {
            top.draw_text(&line, &style, (WIDTH as i32 / 2, y))?;
            y += 22;
        }
        y += 2;
    }
    let label = TextStyle::from((FONT, LEGEND_SIZE).into_font())
        .color(&INK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for row in rows {
        let width: f64 = row
            .iter()
            .map(|e| 30.0 + text_width(&e.name, LEGEND_SIZE))
            .sum();
        let mut x = ((f64::from(WIDTH) - width) / 2.0).max(10.0) as i32;
        let mid = y + 10;
        for e in row {
            let fill = if e.band {
                e.color.mix(0.6).filled()
            } else {
                e.color.filled()
            };
            top.draw(&Rectangle::new([(x, mid - 6), (x + 18, mid + 6)], fill))?;
            top.draw_text(&e.name, &label, (x + 24, mid))?;
            x += (30.0 + text_width(&e.name, LEGEND_SIZE)) as i32;
        }
        y += 26;
    }
    Ok(rest)
}

/// Text style for axis descriptions.
pub(crate) fn axis_desc_style() -> TextStyle<'static> {
    TextStyle::from((FONT, AXIS_DESC_SIZE).into_font()).color(&INK)
}

/// Text style for tick labels.
pub(crate) fn tick_style() -> TextStyle<'static> {
    TextStyle::from((FONT, TICK_SIZE).into_font()).color(&INK)
}

/// A linear f64 axis with ticks exactly where we put them (plotters' own
/// key-point wrapper loses the f64 formatter).
#[derive(Debug, Clone)]
pub(crate) struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Axis {
    /// An axis over `[lo, hi]` with ticks at `ticks`.
    pub(crate) fn new(lo: f64, hi: f64, ticks: Vec<f64>) -> Self {
        Axis { lo, hi, ticks }
    }
}

impl plotters::coord::ranged1d::Ranged for Axis {
    type FormatOption = plotters::coord::ranged1d::DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        let t = if span > 0.0 {
            (value - self.lo) / span
        } else {
            0.0
        };
        limit.0 + (t * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: plotters::coord::ranged1d::KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_subtitles_wrap_at_spaces_and_short_ones_do_not() {
        assert_eq!(wrap("peak 44.84 KiB", 15.0), ["peak 44.84 KiB"]);
        let long = "word ".repeat(60);
        let lines = wrap(long.trim(), 15.0);
        assert_eq!(lines.len(), 3);
        assert_eq!(lines.join(" "), long.trim());
        assert!(lines
            .iter()
            .all(|l| text_width(l, 15.0) <= f64::from(WIDTH) - 60.0));
    }
}
