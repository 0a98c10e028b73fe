//! Model checks of the ring's protocol with loom: every interleaving (up to
//! loom's preemption bound) of a producer that pushes, grows and ends, and a
//! consumer that drains the way the writer does. Loom also checks every slot
//! access for a data race, so a slice over a slot the producer may still be
//! writing fails here.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test -p memtrace-recorder --lib
//! --no-default-features --release --target-dir target/loom -- ring::loom`.

use std::sync::Arc;

use loom::thread;

use super::sync::Ordering;
use super::{Push, Ring};

/// The writer's turn: read `closed`, then the position, drain up to it.
/// True when the ring was closed before its position was read and is now
/// empty: the writer drops it then.
fn writer_turn(ring: &Ring<u64>, got: &mut Vec<u64>) -> bool {
    let closed = ring.closed.load(Ordering::Acquire);
    let until = ring.published();
    ring.consume_until(until, |items| {
        got.extend_from_slice(items);
        Ok::<(), ()>(())
    })
    .unwrap();
    closed && ring.is_drained(until)
}

/// A thread pushes 4 items into a ring of 1 slot that grows to 2 (so it
/// grows once, fills, waits and reuses a slot), then ends: closes the ring
/// and drops its producer. The writer drains until it sees the ring closed
/// and empty, and has every item once, in order.
#[test]
fn push_grow_drain_and_exit() {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(|| {
        let mut producer = Ring::<u64>::with_producer(9, 1, 2).expect("memory");
        let ring = Arc::clone(producer.ring());
        let thread = thread::spawn(move || {
            for i in 0..4 {
                while producer.push(i) != Push::Done {
                    thread::yield_now();
                }
            }
            producer.ring().closed.store(true, Ordering::Release);
            drop(producer);
        });
        let mut got = Vec::new();
        while !writer_turn(&ring, &mut got) {
            thread::yield_now();
        }
        assert_eq!(got, [0, 1, 2, 3]);
        thread.join().unwrap();
    });
}

/// Two consumers at once (which the writer's lock rules out, but the ring
/// must survive): every item is handed out exactly once.
#[test]
fn two_consumers_never_share_an_item() {
    loom::model(|| {
        let mut producer = Ring::<u64>::with_producer(3, 2, 4).expect("memory");
        for i in 0..3 {
            assert_eq!(producer.push(i), Push::Done);
        }
        let ring = Arc::clone(producer.ring());
        let other = {
            let ring = Arc::clone(&ring);
            thread::spawn(move || {
                let mut got = Vec::new();
                writer_turn(&ring, &mut got);
                got
            })
        };
        let mut got = Vec::new();
        writer_turn(&ring, &mut got);
        let mut all = other.join().unwrap();
        all.extend(got);
        all.sort_unstable();
        // Each turn either drained everything or found the other at work;
        // a last turn collects anything left.
        writer_turn(&ring, &mut all);
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2]);
        drop(producer);
    });
}
