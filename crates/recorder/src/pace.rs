//! Whether the writer thread can afford to compress this turn.
//!
//! Compressing costs the writer about twice the time of storing raw blocks
//! (zstd level 1 on the columns). When the program makes events faster
//! than the writer compresses them, the rings fill and the program's
//! threads wait, which costs more than a larger file. So the writer
//! compresses a turn only when, at the rate events arrived since its last
//! turn, compressing would keep it busy less than [`MAX_LOAD`] of the time;
//! a producer that found its ring full forces a raw turn. The cost of a
//! compressed event is learnt from compressed turns, and re-measured every
//! [`PROBE_EVERY`] raw turns in case the program slowed down.

/// Largest share of the time the writer may expect to spend compressing.
pub(crate) const MAX_LOAD: f64 = 0.6;
/// A compressed turn after this many raw ones, to measure the cost again.
pub(crate) const PROBE_EVERY: u32 = 64;
/// Turns with fewer events say little about the cost per event.
const MIN_EVENTS_TO_LEARN: u64 = 4096;

/// The writer's pacing state.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Nanoseconds a compressed turn took per event (a moving average), or
    /// `None` before the first compressed turn with enough events.
    compressed_ns_per_event: Option<f64>,
    /// When the last turn started, in `CLOCK_MONOTONIC` nanoseconds.
    last_start_ns: Option<u64>,
    /// Raw turns in a row.
    raw_turns: u32,
}

impl Pace {
    /// At a turn's start: `waiting` events are in the rings, `stalled` says
    /// whether a producer found its ring full since the last turn. Returns
    /// true to compress this turn.
    pub fn compress(&mut self, now_ns: u64, waiting: u64, stalled: bool) -> bool {
        let since = self
            .last_start_ns
            .map(|t| now_ns.saturating_sub(t).max(1) as f64);
        self.last_start_ns = Some(now_ns);
        let affordable = match (self.compressed_ns_per_event, since) {
            (Some(cost), Some(since)) => waiting as f64 * cost / since < MAX_LOAD,
            _ => true,
        };
        let compress = !stalled && (affordable || self.raw_turns >= PROBE_EVERY);
        self.raw_turns = if compress { 0 } else { self.raw_turns + 1 };
        compress
    }

    /// At a turn's end: it wrote `events` events in `busy_ns`, compressed or not.
    pub fn done(&mut self, events: u64, busy_ns: u64, compressed: bool) {
        if !compressed || events < MIN_EVENTS_TO_LEARN {
            return;
        }
        let cost = busy_ns as f64 / events as f64;
        self.compressed_ns_per_event = Some(match self.compressed_ns_per_event {
            Some(old) => 0.75 * old + 0.25 * cost,
            None => cost,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that needs 100 ns per compressed event.
    fn learnt() -> Pace {
        let mut pace = Pace::default();
        assert!(pace.compress(0, 10_000, false), "nothing known: compress");
        pace.done(10_000, 1_000_000, true);
        pace
    }

    #[test]
    fn compresses_while_events_come_slowly_enough() {
        let mut pace = learnt();
        // 10 ms since the last turn, 50,000 events: 5 ms of compressing, 50%.
        assert!(pace.compress(10_000_000, 50_000, false));
        // Then 70,000 in 10 ms: 70%, too much.
        assert!(!pace.compress(20_000_000, 70_000, false));
        // Back to 10,000: 10%.
        assert!(pace.compress(30_000_000, 10_000, false));
    }

    #[test]
    fn a_full_ring_forces_a_raw_turn() {
        let mut pace = learnt();
        assert!(!pace.compress(10_000_000, 10, true));
        assert!(pace.compress(20_000_000, 10, false));
    }

    #[test]
    fn probes_again_after_a_run_of_raw_turns() {
        let mut pace = learnt();
        let mut now = 0;
        for _ in 0..PROBE_EVERY {
            now += 10_000_000;
            assert!(!pace.compress(now, 1_000_000, false));
        }
        now += 10_000_000;
        assert!(pace.compress(now, 1_000_000, false), "the probe");
        // The probe finds compressing cheaper now: 10 ns an event.
        pace.done(1_000_000, 10_000_000, true);
        // 100 ns × 0.75 + 10 × 0.25 = 77.5 ns; 50,000 events in 10 ms: 39%.
        now += 10_000_000;
        assert!(pace.compress(now, 50_000, false));
    }

    #[test]
    fn small_and_raw_turns_teach_nothing() {
        let mut pace = learnt();
        pace.done(100, 100_000_000, true);
        pace.done(1_000_000, 1, false);
        assert_eq!(pace.compressed_ns_per_event, Some(100.0));
    }
}
