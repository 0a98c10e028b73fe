//! A check of the scan for tests (`MEMTRACE_LEAK_SCAN_VERIFY=1`): every
//! word of every readable mapping, roots or not, is looked up among the
//! unreached blocks, and each unreached block that is named somewhere is
//! printed on stderr with where. A block reported lost while a global still
//! points at it would show up here. Left out: the recorder's own memory and
//! its writer thread's stack (event data), and
//! glibc's heap mappings (a pointer inside a live block is followed by the
//! marking anyway; outside them the heap is free memory with stale data).

use std::ops::Range;

use memtrace_format::Reach;

use super::mark::Marker;
use super::read::MemReader;
use super::roots;

/// Prints `memtrace-verify: BLOCK referenced from ADDR in START-END PATH`
/// for each pointer to an unreached block found outside unreached blocks.
pub(crate) fn report(marker: &Marker, rd: &mut MemReader, recorder_stacks: &[u64]) {
    let text = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let readable = roots::readable_mappings().unwrap_or_default();
    let mut own = Vec::with_capacity(crate::own_memory::MAX_RANGES);
    crate::own_memory::own_ranges_into(&mut own);
    let mut n_found = 0u64;
    for (start, end, perms, path) in roots::maps_lines(&text) {
        if !perms.starts_with('r') || path.starts_with("[v") {
            continue;
        }
        if recorder_stacks.iter().any(|sp| (start..end).contains(sp)) {
            continue;
        }
        // The heap outside live blocks is free memory full of stale copies;
        // inside live blocks, a pointer is already followed by the marking.
        if path == "[heap]" || (path.is_empty() && start % (64 << 20) == 0) {
            continue;
        }
        // The same set as the scan's: the recorder's own ranges cut out.
        let mut clamped: Vec<Range<u64>> = Vec::new();
        roots::for_each_clamped(&readable, start..end, |r| {
            roots::for_each_part_outside(r, &[&own], |part| clamped.push(part));
        });
        for r in clamped {
            rd.read_range(r, |at, words| {
                for (k, &w) in words.iter().enumerate() {
                    let p = at + 8 * k as u64;
                    // The C library's arena points at chunk headers, which
                    // may sit in a block's last word: the allocator's, not
                    // the program's.
                    let arena_word = path.contains("/libc.so") && marker.is_next_chunk_header(w);
                    let Some((i, _)) = marker.find(w).filter(|_| !arena_word) else {
                        continue;
                    };
                    let inside_lost = marker
                        .find(p)
                        .is_some_and(|(j, _)| marker.reach[j as usize] == Reach::Unreached);
                    if marker.reach[i as usize] == Reach::Unreached && !inside_lost {
                        n_found += 1;
                        eprintln!(
                            "memtrace-verify: block {:#x} referenced from {p:#x} in {start:#x}-{end:#x} {path}",
                            marker.start_of(i)
                        );
                    }
                }
            });
        }
    }
    eprintln!("memtrace-verify: {n_found} references to lost blocks outside lost blocks");
}
