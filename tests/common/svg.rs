//! Reading memtrace's SVG charts back with a real XML parser: texts, bars,
//! dots, and the y axes' tick labels to turn pixels back into values.

use std::path::Path;

/// A `<text>` element.
#[derive(Debug, Clone)]
pub struct Text {
    pub x: f64,
    pub y: f64,
    pub anchor: String,
    pub content: String,
    pub rotated: bool,
}

/// A `<rect>` element.
#[derive(Debug, Clone)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub fill: String,
}

impl Rect {
    pub fn center_x(&self) -> f64 {
        self.x + self.w / 2.0
    }
}

/// A `<circle>` element.
#[derive(Debug, Clone)]
pub struct Circle {
    pub cx: f64,
    pub cy: f64,
}

/// A `<polyline>` element: a series' line.
#[derive(Debug, Clone)]
pub struct Polyline {
    pub stroke: String,
    pub points: Vec<(f64, f64)>,
}

/// The parts of a chart the tests look at.
#[derive(Debug, Clone)]
pub struct Svg {
    pub texts: Vec<Text>,
    pub rects: Vec<Rect>,
    pub circles: Vec<Circle>,
    pub polylines: Vec<Polyline>,
}

fn num(node: roxmltree::Node, name: &str) -> f64 {
    node.attribute(name)
        .unwrap_or_else(|| panic!("<{}> without {name}", node.tag_name().name()))
        .parse()
        .unwrap_or_else(|_| panic!("<{}> {name} is not a number", node.tag_name().name()))
}

impl Svg {
    /// Parses an SVG file (panics with the parser's message if it is not well-formed XML).
    pub fn read(path: &Path) -> Svg {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc = roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
        assert_eq!(
            doc.root_element().tag_name().name(),
            "svg",
            "{}",
            path.display()
        );
        let mut svg = Svg {
            texts: Vec::new(),
            rects: Vec::new(),
            circles: Vec::new(),
            polylines: Vec::new(),
        };
        for n in doc.descendants().filter(|n| n.is_element()) {
            match n.tag_name().name() {
                "text" => svg.texts.push(Text {
                    x: num(n, "x"),
                    y: num(n, "y"),
                    anchor: n.attribute("text-anchor").unwrap_or("start").to_string(),
                    content: n.text().unwrap_or_default().trim().to_string(),
                    rotated: n.attribute("transform").is_some(),
                }),
                "rect" => svg.rects.push(Rect {
                    x: num(n, "x"),
                    y: num(n, "y"),
                    w: num(n, "width"),
                    h: num(n, "height"),
                    fill: n.attribute("fill").unwrap_or_default().to_string(),
                }),
                "circle" => svg.circles.push(Circle {
                    cx: num(n, "cx"),
                    cy: num(n, "cy"),
                }),
                "polyline" => svg.polylines.push(Polyline {
                    stroke: n.attribute("stroke").unwrap_or_default().to_string(),
                    points: n
                        .attribute("points")
                        .unwrap_or_default()
                        .split_whitespace()
                        .filter_map(|xy| {
                            let (x, y) = xy.split_once(',')?;
                            Some((x.parse().ok()?, y.parse().ok()?))
                        })
                        .collect(),
                }),
                _ => {}
            }
        }
        svg
    }

    /// Every text's content.
    pub fn strings(&self) -> Vec<&str> {
        self.texts.iter().map(|t| t.content.as_str()).collect()
    }

    /// The one text with exactly this content.
    pub fn text(&self, content: &str) -> &Text {
        let found: Vec<&Text> = self.texts.iter().filter(|t| t.content == content).collect();
        assert_eq!(found.len(), 1, "{content:?} among {:?}", self.strings());
        found[0]
    }

    /// The texts that start with `prefix`.
    pub fn texts_starting(&self, prefix: &str) -> Vec<&Text> {
        self.texts
            .iter()
            .filter(|t| t.content.starts_with(prefix))
            .collect()
    }

    /// Bars of one colour (upper-case `#RRGGBB`), left to right: rects
    /// inside the plotting panels, not the legend's swatches above them.
    pub fn bars(&self, fill: &str) -> Vec<&Rect> {
        let top = self
            .y_axes()
            .first()
            .and_then(|axis| axis.first())
            .map_or(0.0, |tick| tick.1);
        let mut bars: Vec<&Rect> = self
            .rects
            .iter()
            .filter(|r| r.fill == fill && r.y >= top - 1.0)
            .collect();
        bars.sort_by(|a, b| a.x.total_cmp(&b.x));
        bars
    }

    /// The y axes' tick labels, one group per panel from the top: `(value
    /// shown, pixel y)` for right-aligned numeric texts, a new panel where
    /// the value jumps up again.
    pub fn y_axes(&self) -> Vec<Vec<(f64, f64)>> {
        let mut ticks: Vec<(f64, f64)> = self
            .texts
            .iter()
            .filter(|t| t.anchor == "end" && !t.rotated)
            .filter_map(|t| parse_tick(&t.content).map(|v| (v, t.y)))
            .collect();
        ticks.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut axes: Vec<Vec<(f64, f64)>> = Vec::new();
        for t in ticks {
            match axes.last_mut() {
                Some(axis) if axis.last().is_some_and(|last| t.0 < last.0) => axis.push(t),
                _ => axes.push(vec![t]),
            }
        }
        axes
    }
}

/// A tick label's value: `40`, `2.5`, `25k`, `1.5M`.
pub fn parse_tick(s: &str) -> Option<f64> {
    let (number, factor) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1e3),
        'M' => (&s[..s.len() - 1], 1e6),
        'G' => (&s[..s.len() - 1], 1e9),
        _ => (s, 1.0),
    };
    number.parse::<f64>().ok().map(|v| v * factor)
}

/// The value shown at pixel `y` on a linear axis (from its outermost ticks),
/// and the value of one pixel.
pub fn value_at(axis: &[(f64, f64)], y: f64) -> (f64, f64) {
    let (top, bottom) = (axis[0], axis[axis.len() - 1]);
    let per_px = (top.0 - bottom.0) / (bottom.1 - top.1);
    (bottom.0 + (bottom.1 - y) * per_px, per_px)
}
