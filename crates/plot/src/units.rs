//! Human units on axes: which unit an axis shows (KiB or MiB, us or ms),
//! where its ticks go and how they read.

/// What a quantity is measured in. Values handed to a chart are always in
/// the base unit (bytes, nanoseconds, a plain count, a ratio from 0 to 1);
/// the chart picks the display unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes, shown as B, KiB, MiB, GiB or TiB.
    Bytes,
    /// Nanoseconds, shown as ns, us, ms or s.
    Nanos,
    /// A plain count, ticks shortened with k, M, G.
    Count,
    /// A ratio from 0 to 1, shown in percent.
    Ratio,
}

/// The display unit chosen for an axis: shown values are `value / divisor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    /// What a shown value is multiplied by to get the base unit.
    pub divisor: f64,
    /// The unit's name for the axis label (`KiB`, `ms`, `%`), empty for counts.
    pub name: &'static str,
}

const BYTE_UNITS: [(&str, f64); 5] = [
    ("B", 1.0),
    ("KiB", 1024.0),
    ("MiB", 1048576.0),
    ("GiB", 1073741824.0),
    ("TiB", 1099511627776.0),
];
const TIME_UNITS: [(&str, f64); 4] = [("ns", 1.0), ("us", 1e3), ("ms", 1e6), ("s", 1e9)];

impl Unit {
    /// The display unit for an axis whose largest value is `max`: the
    /// largest unit in which `max` is at least 1.
    pub fn scale_for(self, max: f64) -> Scale {
        let pick = |units: &[(&'static str, f64)]| {
            let (name, divisor) = units
                .iter()
                .rev()
                .find(|(_, d)| max >= *d)
                .copied()
                .unwrap_or(units[0]);
            Scale { divisor, name }
        };
        match self {
            Unit::Bytes => pick(&BYTE_UNITS),
            Unit::Nanos => pick(&TIME_UNITS),
            Unit::Count => Scale {
                divisor: 1.0,
                name: "",
            },
            Unit::Ratio => Scale {
                divisor: 0.01,
                name: "%",
            },
        }
    }

    /// A value in the base unit as people read it: `44.84 KiB`, `388.5 us`,
    /// `1.2M`, `41.7%`.
    pub fn format(self, value: f64) -> String {
        let s = self.scale_for(value.abs());
        let shown = value / s.divisor;
        match self {
            Unit::Bytes if s.name == "B" => format!("{value:.0} B"),
            Unit::Bytes => format!("{shown:.2} {}", s.name),
            Unit::Nanos if s.name == "ns" => format!("{value:.0} ns"),
            Unit::Nanos => format!("{shown:.1} {}", s.name),
            Unit::Count => compact(value),
            Unit::Ratio => format!("{shown:.1}%"),
        }
    }

    /// An axis label: `label (unit)`, or `label` for counts.
    pub fn axis_label(self, label: &str, scale: Scale) -> String {
        if scale.name.is_empty() {
            label.to_string()
        } else {
            format!("{label} ({})", scale.name)
        }
    }
}

/// A count with a k/M/G suffix past 10 000: `950`, `9999`, `12k`, `1.5M`.
pub fn compact(value: f64) -> String {
    let a = value.abs();
    let (d, suffix) = if a >= 1e9 {
        (1e9, "G")
    } else if a >= 1e6 {
        (1e6, "M")
    } else if a >= 1e4 {
        (1e3, "k")
    } else {
        return trim(value, if a < 10.0 && a.fract() != 0.0 { 1 } else { 0 });
    };
    let v = value / d;
    format!("{}{suffix}", trim(v, if v.abs() < 10.0 { 1 } else { 0 }))
}

/// `value` with at most `decimals` decimals, trailing zeros dropped.
fn trim(value: f64, decimals: usize) -> String {
    let s = format!("{value:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Ticks of a linear axis over `[0, max]` (values already in the display
/// unit): about `target` steps of 1, 2 or 5 times a power of ten, the last
/// tick at or above `max`. Returns the ticks and the decimals their labels need.
pub fn linear_ticks(max: f64, target: usize) -> (Vec<f64>, usize) {
    let max = if max > 0.0 && max.is_finite() {
        max
    } else {
        1.0
    };
    let rough = max / target.max(1) as f64;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    let n = (max / step - 1e-9).ceil().max(1.0) as usize;
    let ticks = (0..=n).map(|i| i as f64 * step).collect();
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10().floor()) as usize
    };
    (ticks, decimals)
}

/// Ticks of a linear axis for values in `unit` ([`linear_ticks`]), with
/// whole steps on a count axis: it never shows 0.2 of a block.
pub fn axis_ticks(max: f64, target: usize, unit: Unit) -> (Vec<f64>, usize) {
    let (ticks, decimals) = linear_ticks(max, target);
    if unit != Unit::Count || decimals == 0 {
        return (ticks, decimals);
    }
    let top = if max > 0.0 && max.is_finite() {
        max.ceil()
    } else {
        1.0
    };
    ((0..=top as u64).map(|i| i as f64).collect(), 0)
}

/// Formats a tick value of a linear axis whose ticks are `ticks`: on a
/// count axis every tick takes the suffix its largest tick needs (`0, 5k,
/// 10k`, never `5000` beside `10k`).
pub fn tick_label(value: f64, decimals: usize, unit: Unit, ticks: &[f64]) -> String {
    match unit {
        Unit::Count => {
            let top = ticks.iter().fold(0.0f64, |a, &b| a.max(b.abs()));
            let (d, suffix) = count_suffix(top, 1e4);
            let step = ticks
                .windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .fold(f64::INFINITY, f64::min);
            let digits = if step.is_finite() && step / d < 1.0 {
                (-(step / d).log10()).ceil() as usize
            } else {
                0
            };
            if value == 0.0 {
                "0".to_string()
            } else {
                format!("{}{suffix}", trim(value / d, digits))
            }
        }
        _ => format!("{value:.decimals$}"),
    }
}

/// The label of the tick `10^exponent` of a log axis of counts: `1`, `100`,
/// `1k`, `10k`, `1M`, one style from the first thousand on.
pub fn log_tick_label(exponent: f64) -> String {
    let value = 10f64.powf(exponent);
    let (d, suffix) = count_suffix(value, 1e3);
    format!("{}{suffix}", trim(value / d, 1))
}

/// The divisor and suffix for counts up to `top`, with `k` from `k_from` on.
fn count_suffix(top: f64, k_from: f64) -> (f64, &'static str) {
    if top >= 1e9 {
        (1e9, "G")
    } else if top >= 1e6 {
        (1e6, "M")
    } else if top >= k_from {
        (1e3, "k")
    } else {
        (1.0, "")
    }
}

/// Powers of ten from 1 to the first at or above `max`, as exponents.
pub fn log_ticks(max: f64) -> Vec<f64> {
    let top = if max > 1.0 {
        max.log10().ceil() as i32
    } else {
        1
    };
    (0..=top).map(f64::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_pick_the_unit_in_which_the_largest_value_is_at_least_one() {
        assert_eq!(Unit::Bytes.scale_for(45920.0).name, "KiB");
        assert_eq!(Unit::Bytes.scale_for(1000.0).name, "B");
        assert_eq!(Unit::Bytes.scale_for(3.0 * 1048576.0).name, "MiB");
        assert_eq!(Unit::Nanos.scale_for(18_652_000.0).name, "ms");
        assert_eq!(Unit::Nanos.scale_for(388_500.0).name, "us");
        assert_eq!(Unit::Ratio.scale_for(0.4).name, "%");
    }

    #[test]
    fn values_read_like_the_text_reports() {
        assert_eq!(Unit::Bytes.format(45920.0), "44.84 KiB");
        assert_eq!(Unit::Bytes.format(980.0), "980 B");
        assert_eq!(Unit::Nanos.format(388_500.0), "388.5 us");
        assert_eq!(Unit::Ratio.format(0.4167), "41.7%");
        assert_eq!(compact(950.0), "950");
        assert_eq!(compact(12_000.0), "12k");
        assert_eq!(compact(1_500_000.0), "1.5M");
        assert_eq!(compact(2.5), "2.5");
    }

    #[test]
    fn ticks_are_round_steps_covering_the_maximum() {
        // 45920 bytes = 44.84 KiB in about 8 steps: 5.6 rounds up to 10 KiB.
        let (ticks, decimals) = linear_ticks(45920.0 / 1024.0, 8);
        assert_eq!(ticks, [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]);
        assert_eq!(decimals, 0);
        // In about 10 steps: 5 KiB steps up to 45.
        let (ticks, _) = linear_ticks(45920.0 / 1024.0, 10);
        assert_eq!(
            ticks,
            (0..=9).map(|i| f64::from(i) * 5.0).collect::<Vec<_>>()
        );
        let (ticks, decimals) = linear_ticks(0.9, 5);
        assert_eq!(ticks.len(), 6);
        assert!((ticks[5] - 1.0).abs() < 1e-12);
        assert_eq!(decimals, 1);
        assert_eq!(log_ticks(250.0), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(log_ticks(0.0), vec![0.0, 1.0]);
    }

    #[test]
    fn a_count_axis_has_whole_ticks() {
        // Two blocks at most: 0, 1, 2, not 0, 0.5, 1, 1.5, 2.
        assert_eq!(axis_ticks(2.0, 6, Unit::Count), (vec![0.0, 1.0, 2.0], 0));
        assert_eq!(axis_ticks(0.0, 6, Unit::Count), (vec![0.0, 1.0], 0));
        // Larger counts keep their round steps.
        assert_eq!(
            axis_ticks(12.0, 6, Unit::Count).0,
            [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
        );
        // Other units may have fractional ticks.
        assert_eq!(axis_ticks(0.9, 5, Unit::Bytes).1, 1);
    }

    #[test]
    fn every_tick_of_a_count_axis_has_the_same_suffix() {
        let labels = |ticks: &[f64]| -> Vec<String> {
            ticks
                .iter()
                .map(|&v| tick_label(v, 0, Unit::Count, ticks))
                .collect()
        };
        assert_eq!(
            labels(&[0.0, 5000.0, 10000.0, 15000.0]),
            ["0", "5k", "10k", "15k"]
        );
        assert_eq!(
            labels(&[0.0, 200_000.0, 400_000.0, 600_000.0, 800_000.0, 1e6, 1.2e6]),
            ["0", "0.2M", "0.4M", "0.6M", "0.8M", "1M", "1.2M"]
        );
        assert_eq!(
            labels(&[0.0, 2000.0, 4000.0, 6000.0, 8000.0]),
            ["0", "2000", "4000", "6000", "8000"]
        );
        assert_eq!(labels(&[0.0, 1.0, 2.0]), ["0", "1", "2"]);
        let log: Vec<String> = (0..=6).map(|e| log_tick_label(f64::from(e))).collect();
        assert_eq!(log, ["1", "10", "100", "1k", "10k", "100k", "1M"]);
    }
}
