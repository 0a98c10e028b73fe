//! The threads stress fixture (`fixtures/c/stress_threads.c`): the counts it
//! must produce, computed here from the same generator, and the check of a
//! recorded trace against them. Used by `tests/stress_threads.rs` and by
//! `cargo xtask stress` (which includes this file by path).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use memtrace_format::{Completeness, Event, Func, Reader};

/// The heap functions the fixture calls, in the order it prints them.
pub const KINDS: [&str; 7] = [
    "malloc",
    "calloc",
    "aligned_alloc",
    "posix_memalign",
    "memalign",
    "realloc",
    "free",
];

/// Threads each churn round creates, blocks each of them allocates, and the
/// bytes of those blocks (32 + i for i in 0..64).
pub const CHURN_THREADS_PER_ROUND: u64 = 4;
pub const CHURN_BLOCKS: u64 = 64;
pub const CHURN_BYTES_PER_THREAD: u64 = 4064;

/// One run's parameters: `stress_threads THREADS OPS ROUNDS`.
#[derive(Debug, Clone, Copy)]
pub struct StressConfig {
    pub threads: u32,
    pub ops: u64,
    pub churn_rounds: u64,
}

impl StressConfig {
    /// The fixture's command-line arguments.
    pub fn args(&self) -> [String; 3] {
        [
            self.threads.to_string(),
            self.ops.to_string(),
            self.churn_rounds.to_string(),
        ]
    }

    /// Heap calls the run makes on purpose (workers, their final frees and
    /// the churn threads).
    pub fn expected_calls(&self) -> u64 {
        let workers: u64 = (0..self.threads)
            .map(|w| expected_worker(w, self.ops).calls.iter().sum::<u64>())
            .sum();
        workers + self.churn_rounds * CHURN_THREADS_PER_ROUND * CHURN_BLOCKS * 2
    }
}

/// Calls per function (in [`KINDS`] order) and bytes requested.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub calls: [u64; 7],
    pub bytes: u64,
}

/// The fixture's generator: splitmix64 (Steele, Lea and Flood).
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What worker `index` does in `ops` operations, as the fixture's comment
/// specifies: the same generator and decisions, no allocation.
pub fn expected_worker(index: u32, ops: u64) -> Counts {
    let mut state = u64::from(index) + 1;
    let mut held = [false; 64];
    let mut c = Counts::default();
    for _ in 0..ops {
        let r = splitmix64(&mut state);
        let slot = (r % 64) as usize;
        let size = 1 + (r >> 8) % 2048;
        let align = 16u64 << ((r >> 24) % 5);
        let choice = (r >> 32) % 16;
        let n = 1 + (r >> 40) % 4;
        if !held[slot] {
            let kind = (choice % 5) as usize;
            c.calls[kind] += 1;
            c.bytes += match kind {
                1 => n * size,
                2 => size.div_ceil(align) * align,
                _ => size,
            };
            held[slot] = true;
        } else if choice < 10 {
            c.calls[6] += 1;
            held[slot] = false;
        } else {
            c.calls[5] += 1;
            c.bytes += size;
        }
    }
    c.calls[6] += held.iter().filter(|&&h| h).count() as u64;
    c
}

/// The fixture's own report of a run: per worker its thread id and counts,
/// and the churn line.
#[derive(Debug)]
pub struct Printed {
    pub workers: Vec<(u32, Counts)>,
    pub churn: (u64, u64, u64),
}

/// Parses the fixture's standard output.
pub fn parse_output(stdout: &str) -> Result<Printed, String> {
    let mut workers = Vec::new();
    let mut churn = None;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| -> Result<u64, String> {
            words
                .get(i)
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("bad fixture line: {line}"))
        };
        match words.first() {
            Some(&"worker") => {
                if words.len() != 20 || words[2] != "tid" || words[18] != "bytes" {
                    return Err(format!("bad fixture line: {line}"));
                }
                let mut c = Counts::default();
                for (k, name) in KINDS.iter().enumerate() {
                    if words[4 + 2 * k] != *name {
                        return Err(format!("bad fixture line: {line}"));
                    }
                    c.calls[k] = number(5 + 2 * k)?;
                }
                c.bytes = number(19)?;
                if number(1)? != workers.len() as u64 {
                    return Err(format!("workers out of order: {line}"));
                }
                workers.push((number(3)? as u32, c));
            }
            Some(&"churn") => churn = Some((number(2)?, number(4)?, number(6)?)),
            _ => return Err(format!("unexpected fixture line: {line}")),
        }
    }
    let churn = churn.ok_or("the fixture printed no churn line")?;
    Ok(Printed { workers, churn })
}

/// What a checked run showed.
#[derive(Debug)]
pub struct Checked {
    /// Heap events in the trace (all threads, libc's own calls included).
    pub events: u64,
    /// Heap calls of the workers and churn threads, all matched.
    pub fixture_calls: u64,
    /// Blocks received by a moving realloc whose address another thread
    /// used during that realloc's call: the realloc is stamped before its
    /// call, so these sort early (docs/trace-format.md, "What the
    /// timestamps mean"); the check places the receipt at the call's end.
    pub realloc_reorders: u64,
}

/// A block received by a moving realloc, stamped before its call: the
/// block arrived at some moment before the call returned, `due` at the
/// latest (the stamp plus the call's duration).
struct Receipt {
    tid: u32,
    due: u64,
    /// Another thread used the address before `due`.
    overlapped: bool,
}

fn kind_of(func: Func) -> Option<usize> {
    Some(match func {
        Func::Malloc => 0,
        Func::Calloc => 1,
        Func::AlignedAlloc => 2,
        Func::PosixMemalign => 3,
        Func::Memalign => 4,
        Func::Realloc => 5,
        Func::Free => 6,
        _ => return None,
    })
}

/// Checks one run: the fixture's printed counts against the generator, and
/// the trace against both, per thread; every block of the workers and churn
/// threads is freed, by a free that follows its allocation.
pub fn check(config: &StressConfig, stdout: &str, trace: &Path) -> Result<Checked, String> {
    let printed = parse_output(stdout)?;
    if printed.workers.len() != config.threads as usize {
        return Err(format!(
            "{} worker lines for {} threads",
            printed.workers.len(),
            config.threads
        ));
    }
    for (w, (_, counts)) in printed.workers.iter().enumerate() {
        let expected = expected_worker(w as u32, config.ops);
        if *counts != expected {
            return Err(format!(
                "worker {w} printed {counts:?}, the generator says {expected:?}"
            ));
        }
    }
    let churn_threads = config.churn_rounds * CHURN_THREADS_PER_ROUND;
    let churn = (
        churn_threads,
        churn_threads * CHURN_BLOCKS,
        churn_threads * CHURN_BYTES_PER_THREAD,
    );
    if printed.churn != churn {
        return Err(format!(
            "churn line {:?}, expected {churn:?}",
            printed.churn
        ));
    }

    let file = File::open(trace).map_err(|e| format!("{}: {e}", trace.display()))?;
    let mut reader = Reader::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    let main_tid = reader.header().pid;
    let worker_tids: HashMap<u32, usize> = printed
        .workers
        .iter()
        .enumerate()
        .map(|(w, (tid, _))| (*tid, w))
        .collect();
    let mut per_tid: HashMap<u32, Counts> = HashMap::new();
    let mut ended: HashSet<u32> = HashSet::new();
    // Live blocks: address -> allocating thread.
    let mut live: HashMap<u64, u32> = HashMap::new();
    // Blocks received by moving reallocs, placed at the calls' ends.
    // (Two slow reallocs may receive the same address in overlapping calls.)
    let mut receipts: HashMap<(u64, u32), Receipt> = HashMap::new();
    let mut realloc_reorders = 0u64;
    let mut events = 0u64;
    let ours = |tid: u32| tid != main_tid;
    // Makes the received block live: an error when it still is.
    let mut settle = |addr: u64, r: Receipt, live: &mut HashMap<u64, u32>| -> Result<(), String> {
        if let Some(owner) = live.insert(addr, r.tid) {
            return Err(format!(
                "thread {} realloc received {addr:#x}, still live from thread {owner} when \
                 the call returned",
                r.tid
            ));
        }
        realloc_reorders += u64::from(r.overlapped);
        Ok(())
    };
    while let Some(event) = reader.next_event().map_err(|e| e.to_string())? {
        let (tid, e) = match event {
            Event::Heap { tid, event } => (tid, event),
            Event::ThreadEnd { tid, .. } => {
                ended.insert(tid);
                continue;
            }
            _ => continue,
        };
        events += 1;
        // Receipts due by now, and this thread's own (its earlier call has
        // returned).
        if !receipts.is_empty() {
            let mut settled: Vec<(u64, (u64, u32))> = receipts
                .iter()
                .filter(|(_, r)| r.due < e.ts || r.tid == tid)
                .map(|(&key, r)| (r.due, key))
                .collect();
            settled.sort_unstable();
            for (_, key) in settled {
                let r = receipts.remove(&key).expect("listed");
                settle(key.0, r, &mut live)?;
            }
            for ((addr, _), r) in receipts.iter_mut() {
                if *addr == e.addr || *addr == e.old_addr {
                    r.overlapped = true;
                }
            }
        }
        let func = e
            .func()
            .ok_or_else(|| format!("unknown function {}", e.func))?;
        if ours(tid) {
            let kind =
                kind_of(func).ok_or_else(|| format!("thread {tid} called {}", func.name()))?;
            let c = per_tid.entry(tid).or_default();
            c.calls[kind] += 1;
            if kind != 6 {
                c.bytes += e.size;
            }
        }
        let freed = match func {
            Func::Free => Some(e.addr),
            Func::Realloc | Func::ReallocArray if e.old_addr != 0 && e.addr != 0 => {
                Some(e.old_addr)
            }
            _ => None,
        };
        if let Some(addr) = freed {
            if live.remove(&addr).is_none() && ours(tid) {
                return Err(format!(
                    "thread {tid} {} of {addr:#x}, which is not live",
                    func.name()
                ));
            }
        }
        if func == Func::Free || e.addr == 0 {
            continue;
        }
        let moved = matches!(func, Func::Realloc | Func::ReallocArray) && e.old_addr != e.addr;
        if moved {
            // Allow for the 3% rounding of the stored duration.
            let due = e.ts + e.latency + e.latency / 16 + 1;
            receipts.insert(
                (e.addr, tid),
                Receipt {
                    tid,
                    due,
                    overlapped: false,
                },
            );
        } else if let Some(owner) = live.insert(e.addr, tid) {
            // (An address a realloc will receive may be used meanwhile: that
            // realloc's receipt is checked when its call ends.)
            return Err(format!(
                "thread {tid} {} returned {:#x}, still live from thread {owner}",
                func.name(),
                e.addr
            ));
        }
    }
    let mut rest: Vec<((u64, u32), Receipt)> = receipts.drain().collect();
    rest.sort_unstable_by_key(|(_, r)| r.due);
    for ((addr, _), r) in rest {
        settle(addr, r, &mut live)?;
    }
    if !matches!(reader.completeness(), Completeness::Complete(_)) {
        return Err(format!("trace not complete: {:?}", reader.completeness()));
    }

    let mut fixture_calls = 0;
    for (&tid, &w) in &worker_tids {
        let got = per_tid.remove(&tid).unwrap_or_default();
        let expected = printed.workers[w].1;
        if got != expected {
            return Err(format!(
                "worker {w} (tid {tid}): trace {got:?}, expected {expected:?}"
            ));
        }
        fixture_calls += got.calls.iter().sum::<u64>();
        if !ended.contains(&tid) {
            return Err(format!("worker {w} (tid {tid}) has no end in the trace"));
        }
    }
    // The rest are the churn threads.
    let mut churn_got = Counts::default();
    let mut by_calls: BTreeMap<[u64; 7], u64> = BTreeMap::new();
    for (tid, c) in &per_tid {
        for k in 0..7 {
            churn_got.calls[k] += c.calls[k];
        }
        churn_got.bytes += c.bytes;
        *by_calls.entry(c.calls).or_default() += 1;
        if !ended.contains(tid) {
            return Err(format!("churn thread {tid} has no end in the trace"));
        }
    }
    let mut churn_expected = Counts::default();
    churn_expected.calls[0] = churn_threads * CHURN_BLOCKS;
    churn_expected.calls[6] = churn_threads * CHURN_BLOCKS;
    churn_expected.bytes = churn_threads * CHURN_BYTES_PER_THREAD;
    if churn_got != churn_expected || per_tid.len() as u64 != churn_threads {
        return Err(format!(
            "churn threads: {} threads {churn_got:?}, expected {churn_threads} threads \
             {churn_expected:?}; calls per thread: {by_calls:?}",
            per_tid.len()
        ));
    }
    fixture_calls += churn_got.calls.iter().sum::<u64>();
    let leaked: Vec<_> = live.iter().filter(|(_, &tid)| ours(tid)).collect();
    if !leaked.is_empty() {
        return Err(format!(
            "{} blocks of the workers and churn threads are live at the end",
            leaked.len()
        ));
    }
    if fixture_calls != config.expected_calls() {
        return Err(format!(
            "{fixture_calls} calls matched, {} expected",
            config.expected_calls()
        ));
    }
    Ok(Checked {
        events,
        fixture_calls,
        realloc_reorders,
    })
}
