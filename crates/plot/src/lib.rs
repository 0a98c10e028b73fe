//! SVG charts for memtrace, drawn with plotters' SVG backend.
//!
//! The chart functions take plain data (numbers in base units: bytes,
//! nanoseconds, counts, ratios) and return an SVG document as a `String`;
//! they know nothing about traces and write no files. Every chart has a
//! title, axis labels with units, readable ticks in human units (KiB or MiB,
//! us or ms, chosen from the data) and a legend when it has several series.
//!
//! * [`timeline()`]: panels over a shared time axis, lines or filled areas,
//!   shaded state bands, labelled markers (the heap peak);
//! * [`histogram()`] and [`bars()`]: counts per bucket, or grouped bars per
//!   category, on linear or log scales, with `n/a` for unmeasured values,
//!   and adjacent categories named together ([`CategoryGroup`]: the two
//!   sides of a comparison);
//! * [`skipped()`]: the placeholder for a chart that could not be made;
//! * [`page::html`]: an HTML page that shows charts with a sentence and the
//!   command behind each, and checks in the browser that every image loaded.
//!
//! No font library is used: plotters' built-in text estimate lays out the
//! chart and the SVG carries `<text>` elements that the viewer renders.
//!
//! ```
//! use memtrace_plot::{timeline, Panel, Series, Timeline, Unit};
//! let svg = timeline(&Timeline {
//!     title: "Live heap over time".into(),
//!     subtitle: None,
//!     x_label: "time".into(),
//!     x_unit: Unit::Nanos,
//!     x_end: None,
//!     panels: vec![Panel {
//!         label: "live heap".into(),
//!         unit: Unit::Bytes,
//!         series: vec![Series { name: "live heap".into(), points: vec![(0.0, 0.0), (2e6, 4096.0)] }],
//!         filled: true,
//!     }],
//!     bands: vec![],
//!     markers: vec![],
//! })
//! .unwrap();
//! assert!(svg.contains("live heap (KiB)"));
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod bars;
pub mod page;
mod skipped;
mod style;
mod timeline;
pub mod units;

pub use bars::{bars, histogram, BarChart, BarPanel, BarSeries, CategoryGroup, Histogram, Scale};
pub use skipped::skipped;
pub use timeline::{timeline, Band, Marker, Panel, Series, Timeline};
pub use units::Unit;

/// A chart could not be drawn (bad input, or a plotters error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlotError(String);

impl PlotError {
    fn new(message: &str) -> Self {
        PlotError(message.to_string())
    }
}

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlotError {}

impl<E: std::error::Error + Send + Sync> From<plotters::drawing::DrawingAreaErrorKind<E>>
    for PlotError
{
    fn from(e: plotters::drawing::DrawingAreaErrorKind<E>) -> Self {
        PlotError(format!("drawing failed: {e}"))
    }
}
