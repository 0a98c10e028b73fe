//! The placeholder drawn where a chart could not be made: the same size and
//! title as the chart, and the reason in place of the data.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::style::{self, FONT, INK, WIDTH};
use crate::PlotError;

const HEIGHT: u32 = 300;

/// A chart that says `skipped: REASON` under `title`.
pub fn skipped(title: &str, reason: &str) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let body = style::draw_header(&root, title, None, &[])?;
        let (w, h) = body.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        body.draw(&Rectangle::new(
            [(20, 10), (w - 20, h - 20)],
            RGBColor(245, 245, 245).filled(),
        ))?;
        body.draw(&Rectangle::new(
            [(20, 10), (w - 20, h - 20)],
            RGBColor(170, 170, 170).stroke_width(1),
        ))?;
        let style = TextStyle::from((FONT, 22).into_font())
            .color(&INK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        body.draw_text(&format!("skipped: {reason}"), &style, (w / 2, (h - 10) / 2))?;
    }
    Ok(svg)
}
