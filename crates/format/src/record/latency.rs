//! Latencies on a log scale, so that a typical call takes one byte.

/// Latency is stored on a log scale: values below 16 exactly, larger ones
/// with 16 steps per power of two (at most 3% off), so that a typical call
/// takes one byte.
pub fn quantize_latency(ticks: u64) -> u64 {
    if ticks < 16 {
        return ticks;
    }
    let e = 63 - u64::from(ticks.leading_zeros());
    let m = (ticks >> (e - 4)) & 15;
    16 + (e - 4) * 16 + m
}

/// The latency a code stands for: the middle of its step.
#[inline]
pub fn dequantize_latency(code: u64) -> u64 {
    if code < 16 {
        return code;
    }
    let e = ((code - 16) / 16 + 4).min(63);
    let m = (code - 16) % 16;
    let step = 1u64 << (e - 4);
    (16 + m).saturating_mul(step).saturating_add(step / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_survives_within_three_percent() {
        for ticks in (0..5000u64).chain([1 << 20, 123_456_789, u64::MAX / 3]) {
            let back = dequantize_latency(quantize_latency(ticks));
            let err = back.abs_diff(ticks) as f64 / ticks.max(1) as f64;
            assert!(err <= 1.0 / 32.0, "{ticks} came back as {back}");
        }
        assert!(
            quantize_latency(2047) < 128,
            "calls under ~700 ns take one byte"
        );
    }
}
