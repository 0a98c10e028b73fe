//! Layouts compared side by side: runs that do the same work on the same
//! number of elements laid out two ways (a linked list and an array, an
//! array of structs and a struct of arrays), drawn as misses per element so
//! that the two sides of each pair compare directly.
//!
//! A side's misses per element are its misses at `n` elements less its
//! misses at a few (`n_base`), divided by `n - n_base`: the program's
//! start-up and fixed work cancel out, and what is left is what the
//! elements cost. Every side of a chart must come from the same source.

use memtrace_plot::{BarChart, BarPanel, BarSeries, CategoryGroup, Scale, Unit};
use serde_json::Value;

use crate::counters::EventKind;
use crate::findings::Findings;

/// Where miss counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissSource {
    /// The CPU's counters: first-level data and last-level cache load misses.
    Hardware,
    /// cachegrind's model of the caches: data reads and writes.
    Simulated,
}

impl MissSource {
    /// How a chart's subtitle names it.
    pub fn describe(self) -> &'static str {
        match self {
            MissSource::Hardware => "hardware counters (load misses)",
            MissSource::Simulated => "simulated (cachegrind), data reads and writes",
        }
    }
}

/// First-level data (D1) and last-level (LL) cache misses of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Misses {
    /// D1 misses (`L1-dcache-load-misses` when counted).
    pub d1: u64,
    /// LL misses (`LLC-load-misses` when counted).
    pub ll: u64,
    /// Where they come from.
    pub source: MissSource,
}

impl Misses {
    /// The misses of a run: hardware counts when both were measured, else
    /// cachegrind's totals; `None` when neither exists.
    pub fn of(f: &Findings) -> Option<Misses> {
        let hardware = f.counted.as_ref().and_then(|run| {
            Some(Misses {
                d1: run.value(EventKind::L1dLoadMisses)?,
                ll: run.value(EventKind::LlcLoadMisses)?,
                source: MissSource::Hardware,
            })
        });
        hardware.or_else(|| match &f.simulated {
            Some(Ok(sim)) => Some(Misses {
                d1: sim.total.d1_misses(),
                ll: sim.total.ll_misses(),
                source: MissSource::Simulated,
            }),
            _ => None,
        })
    }

    /// The same, from a `memtrace cache --format json` document (schema
    /// `memtrace-cache/1`); the error says why it holds no misses.
    pub fn of_report(doc: &Value) -> Result<Misses, String> {
        if doc["schema"] != "memtrace-cache/1" {
            return Err(format!(
                "not a memtrace-cache/1 document: {}",
                doc["schema"]
            ));
        }
        let measured = |name: &str| -> Option<u64> {
            doc["counters"]["events"]
                .as_array()?
                .iter()
                .find(|e| e["name"] == name && e["status"] == "measured")?["value"]
                .as_u64()
        };
        let l1 = measured(EventKind::L1dLoadMisses.name());
        let llc = measured(EventKind::LlcLoadMisses.name());
        if let (Some(d1), Some(ll)) = (l1, llc) {
            return Ok(Misses {
                d1,
                ll,
                source: MissSource::Hardware,
            });
        }
        let total = &doc["simulated"]["total"];
        match (total["d1_misses"].as_u64(), total["ll_misses"].as_u64()) {
            (Some(d1), Some(ll)) => Ok(Misses {
                d1,
                ll,
                source: MissSource::Simulated,
            }),
            _ => Err(match doc["simulated"]["error"].as_str() {
                Some(e) => format!("no hardware miss counts, and {e}"),
                None => "no hardware miss counts and no simulation".into(),
            }),
        }
    }
}

/// One side of a pair: a run at `n` elements and the same run at `n_base`.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// The layout's name under its bars (`list`, `array`).
    pub label: String,
    /// The misses at `n` elements.
    pub misses: Misses,
    /// The number of elements.
    pub n: u64,
    /// The misses at `n_base` elements.
    pub base: Misses,
    /// The few elements of the baseline run (less than `n`).
    pub n_base: u64,
}

impl Side {
    /// `(D1, LL)` misses per element; a side with fewer misses at `n` than
    /// at `n_base` costs nothing per element.
    pub fn per_element(&self) -> (f64, f64) {
        let per = |at_n: u64, at_base: u64| {
            at_n.saturating_sub(at_base) as f64 / (self.n - self.n_base) as f64
        };
        (
            per(self.misses.d1, self.base.d1),
            per(self.misses.ll, self.base.ll),
        )
    }
}

/// Two (or more) layouts of the same work, side by side.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// The comparison's name under its sides (`list vs array`).
    pub name: String,
    /// The sides, left to right.
    pub sides: Vec<Side>,
}

/// The chart of `pairs`: D1 and LL misses per element, one panel each,
/// every pair's sides next to each other under its name.
pub fn chart(title: &str, pairs: &[Pair]) -> Result<BarChart, String> {
    let sides: Vec<&Side> = pairs.iter().flat_map(|p| &p.sides).collect();
    let Some(first) = sides.first() else {
        return Err("nothing to compare".into());
    };
    let source = first.misses.source;
    if let Some(other) = sides
        .iter()
        .find(|s| s.misses.source != source || s.base.source != source)
    {
        return Err(format!(
            "{} is not counted like {}: {} against {}",
            other.label,
            first.label,
            other.misses.source.describe(),
            source.describe()
        ));
    }
    if let Some(s) = sides.iter().find(|s| s.n <= s.n_base) {
        return Err(format!(
            "{}: {} elements is not more than the baseline's {}",
            s.label, s.n, s.n_base
        ));
    }
    let per: Vec<(f64, f64)> = sides.iter().map(|s| s.per_element()).collect();
    let panel = |label: &str, series: &str, values: Vec<f64>| BarPanel {
        label: label.into(),
        unit: Unit::Count,
        scale: Scale::Linear,
        series: vec![BarSeries {
            name: series.into(),
            values: values.into_iter().map(Some).collect(),
        }],
    };
    Ok(BarChart {
        title: title.into(),
        subtitle: Some(format!(
            "Source: {}. Per element: a run's misses at N elements less its misses at a \
             few, over the difference, so that start-up cancels out.",
            source.describe()
        )),
        x_label: "layout, in pairs that do the same work".into(),
        categories: sides.iter().map(|s| s.label.clone()).collect(),
        panels: vec![
            panel(
                "D1 misses per element",
                "first-level data cache (D1)",
                per.iter().map(|p| p.0).collect(),
            ),
            panel(
                "LL misses per element",
                "last-level cache (LL)",
                per.iter().map(|p| p.1).collect(),
            ),
        ],
        touching: false,
        value_labels: true,
        groups: pairs
            .iter()
            .map(|p| CategoryGroup {
                label: p.name.clone(),
                n_categories: p.sides.len(),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(d1: u64, ll: u64) -> Misses {
        Misses {
            d1,
            ll,
            source: MissSource::Simulated,
        }
    }

    fn side(label: &str, at_n: Misses, base: Misses) -> Side {
        Side {
            label: label.into(),
            misses: at_n,
            n: 20_002,
            base,
            n_base: 2,
        }
    }

    fn pairs() -> Vec<Pair> {
        vec![
            Pair {
                name: "list vs array".into(),
                sides: vec![
                    side("list", sim(102_000, 21_000), sim(2_000, 1_000)),
                    side("array", sim(14_500, 3_500), sim(2_000, 1_000)),
                ],
            },
            Pair {
                name: "AoS vs SoA".into(),
                sides: vec![
                    side("aos", sim(102_000, 21_000), sim(2_000, 1_000)),
                    side("soa", sim(1_000, 500), sim(2_000, 1_000)),
                ],
            },
        ]
    }

    #[test]
    fn misses_per_element_cancel_the_baseline() {
        let p = pairs();
        assert_eq!(p[0].sides[0].per_element(), (5.0, 1.0));
        assert_eq!(p[0].sides[1].per_element(), (0.625, 0.125));
        // Fewer misses than the baseline: nothing per element.
        assert_eq!(p[1].sides[1].per_element(), (0.0, 0.0));
    }

    #[test]
    fn the_chart_puts_each_pair_side_by_side_with_exact_values() {
        let c = chart("Cache misses per element", &pairs()).unwrap();
        assert_eq!(c.categories, ["list", "array", "aos", "soa"]);
        let groups: Vec<(&str, usize)> = c
            .groups
            .iter()
            .map(|g| (g.label.as_str(), g.n_categories))
            .collect();
        assert_eq!(groups, [("list vs array", 2), ("AoS vs SoA", 2)]);
        assert_eq!(c.panels[0].label, "D1 misses per element");
        assert_eq!(
            c.panels[0].series[0].values,
            [Some(5.0), Some(0.625), Some(5.0), Some(0.0)]
        );
        assert_eq!(
            c.panels[1].series[0].values,
            [Some(1.0), Some(0.125), Some(1.0), Some(0.0)]
        );
        let subtitle = c.subtitle.as_deref().unwrap();
        assert!(
            subtitle.starts_with("Source: simulated (cachegrind), data reads and writes."),
            "{subtitle}"
        );

        // Drawn by memtrace-plot: the values on their bars, the pairs named.
        let svg = memtrace_plot::bars(&c).unwrap();
        for text in [
            "5",
            // Two decimals, ties to even as Rust formats them.
            "0.62",
            "1",
            "0.12",
            "list vs array",
            "AoS vs SoA",
            "D1 misses per element",
            "LL misses per element",
        ] {
            assert!(svg.contains(&format!("\n{text}\n")), "{text}");
        }
    }

    #[test]
    fn sides_counted_differently_are_refused() {
        let mut p = pairs();
        p[1].sides[0].misses.source = MissSource::Hardware;
        let e = chart("t", &p).unwrap_err();
        assert_eq!(
            e,
            "aos is not counted like list: hardware counters (load misses) against \
             simulated (cachegrind), data reads and writes"
        );
        assert_eq!(chart("t", &[]).unwrap_err(), "nothing to compare");
    }

    #[test]
    fn a_report_gives_hardware_counts_when_measured_else_simulated_ones() {
        let simulated: Value = serde_json::json!({
            "schema": "memtrace-cache/1",
            "counters": {"events": [
                {"name": "L1-dcache-load-misses", "status": "unsupported", "reason": "no PMU"}
            ]},
            "simulated": {"source": "simulated (cachegrind)", "total": {"d1_misses": 7, "ll_misses": 3}}
        });
        assert_eq!(Misses::of_report(&simulated), Ok(sim(7, 3)));
        let hardware: Value = serde_json::json!({
            "schema": "memtrace-cache/1",
            "counters": {"events": [
                {"name": "L1-dcache-load-misses", "status": "measured", "value": 70},
                {"name": "LLC-load-misses", "status": "measured", "value": 30}
            ]},
            "simulated": null
        });
        assert_eq!(
            Misses::of_report(&hardware),
            Ok(Misses {
                d1: 70,
                ll: 30,
                source: MissSource::Hardware
            })
        );
        let failed: Value = serde_json::json!({
            "schema": "memtrace-cache/1",
            "counters": {"events": []},
            "simulated": {"source": "simulated (cachegrind)", "error": "cannot run valgrind"}
        });
        assert_eq!(
            Misses::of_report(&failed),
            Err("no hardware miss counts, and cannot run valgrind".into())
        );
    }
}
