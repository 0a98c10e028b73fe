//! Human-readable quantities.

/// Bytes with a binary unit: `1.5 KiB`, `980 B`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.2} {}", UNITS[unit])
}

/// Seconds from nanoseconds: `0.123 s`, `12 us`.
pub fn seconds(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.3} s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.3} ms", ns as f64 / 1e6)
    } else if ns >= 1_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else {
        format!("{ns} ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_naturally() {
        assert_eq!(bytes(980), "980 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(45920), "44.84 KiB");
        assert_eq!(seconds(1_500), "1.5 us");
        assert_eq!(seconds(2_000_000_000), "2.000 s");
    }
}
