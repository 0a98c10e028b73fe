//! Where the scan looks for pointers: the writable segments of every loaded
//! module, each thread's stack and static thread-local storage, and the
//! readable mappings that clamp every range.
//!
//! Everything here is gathered *before* other threads are stopped: the
//! loader's lock and the allocators' locks may be held by a thread that the
//! scan is about to stop.

use std::ffi::{c_int, c_void};
use std::ops::Range;

/// Bytes of glibc's thread control block (`struct pthread`, 2304 bytes on
/// x86-64 glibc 2.36) scanned from the thread pointer: it holds the DTV
/// pointer and the first block of `pthread_setspecific` values.
pub(crate) const TCB_BYTES: u64 = 2304;

/// What the loaded modules contribute.
#[derive(Default)]
pub(crate) struct ModuleRoots {
    /// Writable PT_LOAD segments (`.data`, `.bss`, ...).
    pub segments: Vec<Range<u64>>,
    /// The C library's writable segments, which hold glibc malloc's main
    /// arena (see `Marker::scan_allocator_root`).
    pub allocator_segments: Vec<Range<u64>>,
    /// Static TLS blocks as offsets below the thread pointer: a thread with
    /// thread pointer `tp` has the block `tp - offset .. tp - offset + size`.
    pub tls: Vec<(u64, u64)>,
}

struct Collect {
    roots: ModuleRoots,
    /// An address inside the recorder's own code: its module's data is the
    /// recorder's, unless that module is the executable (the Rust front end).
    own_code: u64,
    tp: u64,
}

/// The writable segments and static TLS of every loaded module, leaving out
/// the preload library's own.
pub(crate) fn module_roots(own_code: u64) -> ModuleRoots {
    let mut c = Collect {
        roots: ModuleRoots::default(),
        own_code,
        tp: thread_pointer(),
    };
    // SAFETY: the callback only reads the dl_phdr_info it is given and
    // writes into the Collect passed through `data`, which outlives the call.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut c as *mut Collect).cast()) };
    c.roots
}

unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
    // SAFETY: dl_iterate_phdr passes a valid info for the call; `data` is
    // the Collect given by `module_roots`.
    let (info, c) = unsafe { (&*info, &mut *(data as *mut Collect)) };
    if info.dlpi_phdr.is_null() {
        return 0;
    }
    // SAFETY: the loader gives dlpi_phnum headers at dlpi_phdr.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let bias = info.dlpi_addr;
    let is_exe = info.dlpi_name.is_null()
        // SAFETY: a non-null dlpi_name is a NUL-terminated string.
        || unsafe { *info.dlpi_name } == 0;
    let holds_own_code = phdrs.iter().any(|ph| {
        ph.p_type == libc::PT_LOAD
            && (bias + ph.p_vaddr..bias + ph.p_vaddr + ph.p_memsz).contains(&c.own_code)
    });
    if holds_own_code && !is_exe {
        return 0; // The preload library's own state is not the program's.
    }
    // SAFETY: as above, a non-null dlpi_name is a NUL-terminated string.
    let is_libc = !is_exe
        && unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) }
            .to_bytes()
            .rsplit(|&b| b == b'/')
            .next()
            .is_some_and(|name| name.starts_with(b"libc.so"));
    for ph in phdrs {
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_W != 0 {
            let start = bias + ph.p_vaddr;
            let segments = if is_libc {
                &mut c.roots.allocator_segments
            } else {
                &mut c.roots.segments
            };
            segments.push(start..start + ph.p_memsz);
        }
        if ph.p_type == libc::PT_TLS && !info.dlpi_tls_data.is_null() && c.tp != 0 {
            let block = info.dlpi_tls_data as u64;
            // Static TLS lies below the thread pointer (x86-64's variant II);
            // a block elsewhere is dynamic TLS, a heap block found through
            // the DTV instead.
            if block < c.tp && c.tp - block < 1 << 20 {
                c.roots.tls.push((c.tp - block, ph.p_memsz));
            }
        }
    }
    0
}

/// The calling thread's thread pointer (`pthread_self` is the TCB address on
/// x86-64); 0 where the layout is not known.
pub(crate) fn thread_pointer() -> u64 {
    if cfg!(target_arch = "x86_64") {
        // SAFETY: pthread_self has no preconditions.
        unsafe { libc::pthread_self() as u64 }
    } else {
        0
    }
}

/// One mapping of `/proc/self/maps` that may be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mapping {
    pub start: u64,
    pub end: u64,
    /// Private, writable and anonymous (no path, not `[heap]` or `[stack]`).
    pub anonymous_rw: bool,
    /// Right above an inaccessible mapping: a thread stack over its guard.
    pub above_guard: bool,
}

/// The readable mappings, in address order, without the kernel's special
/// ones (`[vvar]`, `[vsyscall]`) whose reads may fault. An error when
/// `/proc/self/maps` cannot be read (the program may have lowered
/// `RLIMIT_NOFILE` so that nothing can be opened), or memory for it
/// cannot be had (kind `OutOfMemory`).
pub(crate) fn readable_mappings() -> std::io::Result<Vec<Mapping>> {
    let text = crate::memory::read_proc("/proc/self/maps")?;
    Ok(parse_maps(&text))
}

/// The lines of a maps file: `(start, end, permissions, path)`.
pub(crate) fn maps_lines(text: &str) -> impl Iterator<Item = (u64, u64, &str, &str)> {
    text.lines().filter_map(|line| {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next()?, fields.next()?);
        let path = fields.nth(3).unwrap_or("");
        let (s, e) = range.split_once('-')?;
        let start = u64::from_str_radix(s, 16).ok()?;
        let end = u64::from_str_radix(e, 16).ok()?;
        Some((start, end, perms, path))
    })
}

fn parse_maps(text: &str) -> Vec<Mapping> {
    let mut out = Vec::new();
    let mut guard_end = None;
    for (start, end, perms, path) in maps_lines(text) {
        let above_guard = guard_end == Some(start);
        guard_end = perms.starts_with("---").then_some(end);
        if !perms.starts_with('r') || path.starts_with("[v") {
            continue;
        }
        out.push(Mapping {
            start,
            end,
            anonymous_rw: perms.starts_with("rw") && perms.ends_with('p') && path.is_empty(),
            above_guard,
        });
    }
    out
}

/// glibc's non-main arenas are mapped at multiples of their maximum size.
const ARENA_ALIGN: u64 = 64 << 20;

/// Memory the program manages itself: the parts of anonymous mappings that
/// are not the heap's (not a glibc arena, not a live block or its chunk
/// header) nor the recorder's own. Custom allocators keep objects there
/// (CPython's pymalloc arenas, for one), and their pointers to malloc'd
/// blocks are real. The kernel merges adjacent anonymous mappings, so a
/// mapping may hold both; `gaps` cuts the live blocks out. (Live thread
/// stacks are told apart by their stack pointers, later.)
///
/// The recorder's own ranges are cut out, not the whole mapping dropped:
/// the kernel merges an arena the program maps right next to one of the
/// recorder's mappings into one region, and CPython's dict tables found
/// only from such an arena were called definitely lost.
pub(crate) fn program_managed(
    maps: &[Mapping],
    own: &[Range<u64>],
    gaps: &dyn Fn(Range<u64>) -> Vec<Range<u64>>,
) -> Vec<Range<u64>> {
    maps.iter()
        .filter(|m| m.anonymous_rw)
        .filter(|m| m.start % ARENA_ALIGN != 0)
        .filter(|m| !is_glibc_mmapped_chunk(m))
        .flat_map(|m| without(m.start..m.end, own))
        .flat_map(gaps)
        .collect()
}

/// The parts of `range` outside every range of `cut` (in any order,
/// possibly overlapping), in address order.
pub(crate) fn without(range: Range<u64>, cut: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut inside: Vec<Range<u64>> = cut
        .iter()
        .filter(|c| c.start < range.end && range.start < c.end)
        .cloned()
        .collect();
    inside.sort_unstable_by_key(|c| c.start);
    let mut out = Vec::new();
    let mut at = range.start;
    for c in inside {
        if c.start > at {
            out.push(at..c.start);
        }
        at = at.max(c.end);
    }
    if at < range.end {
        out.push(at..range.end);
    }
    out
}

/// A chunk glibc mapped for one large block starts with its header: a zero
/// `prev_size` and a size word equal to the mapping's length with the
/// IS_MMAPPED bit (2) set.
fn is_glibc_mmapped_chunk(m: &Mapping) -> bool {
    if m.end - m.start < 16 {
        return false;
    }
    // SAFETY: the mapping is readable and at least 16 bytes long.
    let (prev_size, size) = unsafe {
        (
            std::ptr::read_volatile(m.start as *const u64),
            std::ptr::read_volatile((m.start + 8) as *const u64),
        )
    };
    prev_size == 0 && size & 2 != 0 && size & !7 == m.end - m.start
}

/// The mapping that holds `addr`.
pub(crate) fn mapping_of(maps: &[Mapping], addr: u64) -> Option<Mapping> {
    let i = maps.partition_point(|m| m.start <= addr);
    let m = *maps.get(i.checked_sub(1)?)?;
    (addr < m.end).then_some(m)
}

/// Adds the readable parts of `range`, 8-byte aligned, to `out`.
pub(crate) fn push_clamped(maps: &[Mapping], range: Range<u64>, out: &mut Vec<Range<u64>>) {
    let start = range.start.next_multiple_of(8);
    let end = range.end & !7;
    let first = maps.partition_point(|m| m.end <= start);
    for m in &maps[first..] {
        if m.start >= end {
            break;
        }
        let s = start.max(m.start);
        let e = end.min(m.end);
        if s < e {
            out.push(s..e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
1000-3000 rw-p 00000000 00:00 0
3000-4000 ---p 00000000 00:00 0
4000-6000 r--p 00000000 fd:01 1 /lib/x.so
7000-8000 r--p 00000000 00:00 0 [vvar]
9000-a000 rw-p 00000000 00:00 0 [stack]
";

    #[test]
    fn the_recorders_own_ranges_are_cut_out_of_a_merged_mapping() {
        // One anonymous region (a buffer of ours, as program_managed reads
        // its first words): the program's part merged by the kernel with
        // the recorder's, which holds two ranges of it.
        let buffer = vec![0u64; 0x800];
        let base = buffer.as_ptr() as u64;
        let maps = parse_maps(&format!(
            "{:x}-{:x} rw-p 00000000 00:00 0\n",
            base,
            base + 0x4000
        ));
        let own = [
            base + 0x3000..base + 0x4000,
            base + 0x1000..base + 0x2000,
            0x30000..0x31000,
        ];
        let whole = |r: Range<u64>| vec![r];
        assert_eq!(
            program_managed(&maps, &own, &whole),
            vec![base..base + 0x1000, base + 0x2000..base + 0x3000]
        );
        std::hint::black_box(&buffer);
    }

    #[test]
    fn without_cuts_overlapping_ranges_in_any_order() {
        assert_eq!(without(0x10..0x20, &[]), vec![0x10..0x20]);
        let everything = [Range {
            start: 0x0,
            end: 0x30,
        }];
        assert_eq!(without(0x10..0x20, &everything), Vec::<Range<u64>>::new());
        assert_eq!(
            without(0x10..0x40, &[0x30..0x38, 0x18..0x20, 0x1c..0x28]),
            vec![0x10..0x18, 0x28..0x30, 0x38..0x40]
        );
    }

    #[test]
    fn ranges_are_clamped_to_readable_mappings() {
        let maps = parse_maps(MAPS);
        assert_eq!(maps.len(), 3);
        assert!(maps[0].anonymous_rw && !maps[0].above_guard);
        assert!(!maps[1].anonymous_rw);
        let mut out = Vec::new();
        push_clamped(&maps, 0x0ffc..0x9010, &mut out);
        assert_eq!(out, vec![0x1000..0x3000, 0x4000..0x6000, 0x9000..0x9010]);
        assert_eq!(mapping_of(&maps, 0x9008).map(|m| m.start), Some(0x9000));
        assert_eq!(mapping_of(&maps, 0x3008), None);
    }
}
