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

/// A count with its noun, in the singular for 1: `1 block`, `2 blocks`,
/// `0 blocks`, `1 process`, `3 processes` (see [`noun`]).
pub fn count(n: u64, singular: &str) -> String {
    format!("{n} {}", noun(n, singular))
}

/// The noun for `n` of it: `singular` for 1, else its plural, "es" added
/// after s, x, ch and sh (`processes`), "s" after anything else. For a
/// table that pads the word, so that its columns stay aligned.
pub fn noun(n: u64, singular: &str) -> String {
    if n == 1 {
        singular.to_string()
    } else if ["s", "x", "ch", "sh"].iter().any(|e| singular.ends_with(e)) {
        format!("{singular}es")
    } else {
        format!("{singular}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(1, "block"), "1 block");
        assert_eq!(count(2, "block"), "2 blocks");
        assert_eq!(count(0, "call"), "0 calls");
        assert_eq!(count(1, "traced process"), "1 traced process");
        assert_eq!(count(5, "traced process"), "5 traced processes");
        assert_eq!(noun(1, "stall"), "stall");
        assert_eq!(noun(1000, "more frame"), "more frames");
    }

    #[test]
    fn units_read_naturally() {
        assert_eq!(bytes(980), "980 B");
        assert_eq!(bytes(1536), "1.50 KiB");
        assert_eq!(bytes(45920), "44.84 KiB");
        assert_eq!(seconds(1_500), "1.5 us");
        assert_eq!(seconds(2_000_000_000), "2.000 s");
    }
}
