//! Where the scan looks for pointers: the writable segments of every loaded
//! module, each thread's stack and static thread-local storage, and the
//! readable mappings that clamp every range.
//!
//! The modules are gathered *before* other threads are stopped: the
//! loader's lock may be held by a thread that the scan is about to stop.
//! The memory map is read again once they are stopped, into buffers
//! allocated before ([`MapsBuffer`]), so that what they mapped or unmapped
//! until then is seen.

use std::ffi::{c_int, c_void};
use std::ops::Range;

use super::read::MemReader;

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
    let mut out = Vec::new();
    out.try_reserve(text.lines().count())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
    parse_maps_into(&text, &mut out);
    Ok(out)
}

/// Room to read the memory map again while the other threads are stopped,
/// allocated before: the text and the parsed mappings.
pub(crate) struct MapsBuffer {
    text: Vec<u8>,
    /// The readable mappings of the last [`MapsBuffer::reread`].
    pub maps: Vec<Mapping>,
}

impl MapsBuffer {
    /// Room for a map like `now`'s and then some (threads may map more
    /// before they are stopped); `None` when memory is short.
    pub fn for_maps_like(now: &[Mapping]) -> Option<MapsBuffer> {
        // A line is at most about 100 bytes plus a path of up to PATH_MAX.
        let lines = 2 * now.len() + 1024;
        let mut text = Vec::new();
        text.try_reserve_exact(lines * 160 + (256 << 10)).ok()?;
        let mut maps = Vec::new();
        maps.try_reserve_exact(lines).ok()?;
        Some(MapsBuffer { text, maps })
    }

    /// Reads `/proc/self/maps` again into the buffers, allocating nothing;
    /// false (the buffers then hold nothing usable) when it cannot be
    /// opened or does not fit.
    pub fn reread(&mut self) -> bool {
        self.text.clear();
        self.maps.clear();
        // SAFETY: the path is NUL-terminated; read writes only into the
        // spare capacity of `text`, at most what is left of it, and
        // `set_len` covers only the bytes it wrote.
        unsafe {
            let fd = libc::open(
                c"/proc/self/maps".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            );
            if fd < 0 {
                return false;
            }
            loop {
                let room = self.text.capacity() - self.text.len();
                if room == 0 {
                    libc::close(fd);
                    return false;
                }
                let end = self.text.as_mut_ptr().add(self.text.len());
                let n = libc::read(fd, end.cast(), room);
                if n < 0 && *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                if n <= 0 {
                    libc::close(fd);
                    if n < 0 {
                        return false;
                    }
                    break;
                }
                self.text.set_len(self.text.len() + n as usize);
            }
        }
        let Ok(text) = std::str::from_utf8(&self.text) else {
            return false;
        };
        parse_maps_into(text, &mut self.maps)
    }
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

/// Appends the readable mappings of `text` to `out` without growing it;
/// false when they did not all fit.
fn parse_maps_into(text: &str, out: &mut Vec<Mapping>) -> bool {
    let mut guard_end = None;
    for (start, end, perms, path) in maps_lines(text) {
        let above_guard = guard_end == Some(start);
        guard_end = perms.starts_with("---").then_some(end);
        if !perms.starts_with('r') || path.starts_with("[v") {
            continue;
        }
        if out.len() == out.capacity() {
            return false;
        }
        out.push(Mapping {
            start,
            end,
            anonymous_rw: perms.starts_with("rw") && perms.ends_with('p') && path.is_empty(),
            above_guard,
        });
    }
    true
}

/// glibc's non-main arenas are mapped at multiples of their maximum size.
const ARENA_ALIGN: u64 = 64 << 20;

/// True when `m` may be memory the program manages itself: an anonymous
/// mapping that is not the heap's (not a glibc arena, not a chunk glibc
/// mapped for one large block). Custom allocators
/// keep objects there (CPython's pymalloc arenas, for one), and their
/// pointers to malloc'd blocks are real. The kernel merges adjacent
/// anonymous mappings, so a mapping may hold live blocks and the
/// recorder's own memory too: the scan reads only its gaps between blocks,
/// with the recorder's ranges cut out ([`for_each_part_outside`]:
/// a mapping merged with the recorder's was once dropped whole, and
/// CPython's dict tables found only from such an arena read definitely
/// lost). Live thread
/// stacks are told apart by their stack pointers, by the caller.
pub(crate) fn is_program_managed(m: &Mapping, rd: &mut MemReader) -> bool {
    m.anonymous_rw && !m.start.is_multiple_of(ARENA_ALIGN) && !is_glibc_mmapped_chunk(m, rd)
}

/// A chunk glibc mapped for one large block starts with its header: a zero
/// `prev_size` and a size word equal to the mapping's length with the
/// IS_MMAPPED bit (2) set.
fn is_glibc_mmapped_chunk(m: &Mapping, rd: &mut MemReader) -> bool {
    if m.end - m.start < 16 {
        return false;
    }
    let mut header = None;
    rd.clear();
    rd.push(0, m.start, 16);
    rd.read(|_, words| header = Some((words[0], words[1])));
    header.is_some_and(|(prev_size, size)| {
        prev_size == 0 && size & 2 != 0 && size & !7 == m.end - m.start
    })
}

/// The parts of `range` that no range of `covered` overlaps, in address
/// order, each passed to `f`; allocates nothing. The scan cuts the
/// recorder's own mappings out of the program's anonymous memory this way
/// (the kernel merges adjacent mappings), and the module segments too:
/// they are scanned as roots of their own (a module's data with the
/// stale-pointer rule, the C library's with the allocator's words
/// skipped), and a `.bss` beyond the file's last page is anonymous memory
/// that would otherwise be scanned a second time without those rules.
pub(crate) fn for_each_part_outside(
    range: Range<u64>,
    covered: &[&[Range<u64>]],
    mut f: impl FnMut(Range<u64>),
) {
    let mut at = range.start;
    while at < range.end {
        let next = covered
            .iter()
            .flat_map(|c| c.iter())
            .filter(|c| c.start < range.end && at < c.end)
            .min_by_key(|c| c.start);
        match next {
            None => {
                f(at..range.end);
                return;
            }
            Some(c) => {
                if c.start > at {
                    f(at..c.start);
                }
                at = at.max(c.end);
            }
        }
    }
}

/// The mapping that holds `addr`.
pub(crate) fn mapping_of(maps: &[Mapping], addr: u64) -> Option<Mapping> {
    let i = maps.partition_point(|m| m.start <= addr);
    let m = *maps.get(i.checked_sub(1)?)?;
    (addr < m.end).then_some(m)
}

/// Calls `f` with each readable part of `range`, 8-byte aligned.
pub(crate) fn for_each_clamped(maps: &[Mapping], range: Range<u64>, mut f: impl FnMut(Range<u64>)) {
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
            f(s..e);
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
    fn ranges_are_clamped_to_readable_mappings() {
        let mut maps = Vec::with_capacity(3);
        assert!(parse_maps_into(MAPS, &mut maps));
        assert!(!parse_maps_into(MAPS, &mut Vec::with_capacity(2)));
        assert_eq!(maps.len(), 3);
        assert!(maps[0].anonymous_rw && !maps[0].above_guard);
        assert!(!maps[1].anonymous_rw);
        let mut out = Vec::new();
        for_each_clamped(&maps, 0x0ffc..0x9010, |r| out.push(r));
        assert_eq!(out, vec![0x1000..0x3000, 0x4000..0x6000, 0x9000..0x9010]);
        assert_eq!(mapping_of(&maps, 0x9008).map(|m| m.start), Some(0x9000));
        assert_eq!(mapping_of(&maps, 0x3008), None);
    }

    #[test]
    fn parts_covered_by_module_segments_are_left_out() {
        let data = [0x1100..0x1200, 0x2f00..0x3100];
        let libc = [0x1180..0x1280, 0x5000..0x5100];
        let mut parts = Vec::new();
        for_each_part_outside(0x1000..0x3000, &[&data, &libc], |p| parts.push(p));
        assert_eq!(parts, vec![0x1000..0x1100, 0x1280..0x2f00]);
        parts.clear();
        for_each_part_outside(0x1100..0x1200, &[&data, &libc], |p| parts.push(p));
        assert_eq!(parts, vec![]);
        parts.clear();
        for_each_part_outside(0x4000..0x5000, &[&data, &libc], |p| parts.push(p));
        assert_eq!(parts, vec![0x4000..0x5000]);
    }

    #[test]
    fn the_recorders_ranges_are_cut_out_of_a_merged_mapping() {
        use crate::own_memory::{forget_own_mapping, note_own_mapping, own_ranges_into};
        // Addresses no other test notes: the table is the process's.
        let base = 0x7e57_0000_0000u64;
        let own = |out: &mut Vec<Range<u64>>| {
            own_ranges_into(out);
            out.retain(|r| (base..base + 0x4000).contains(&r.start));
        };
        let mut ranges = Vec::with_capacity(crate::own_memory::MAX_RANGES);
        note_own_mapping(base + 0x3000, 0x1000);
        note_own_mapping(base + 0x1000, 0x1000);
        own(&mut ranges);
        assert_eq!(
            ranges,
            vec![base + 0x1000..base + 0x2000, base + 0x3000..base + 0x4000]
        );
        let mut parts = Vec::new();
        for_each_part_outside(base..base + 0x4000, &[&ranges], |p| parts.push(p));
        assert_eq!(
            parts,
            vec![base..base + 0x1000, base + 0x2000..base + 0x3000]
        );
        forget_own_mapping(base + 0x3000);
        forget_own_mapping(base + 0x1000);
        own(&mut ranges);
        assert_eq!(ranges, vec![]);
    }

    #[test]
    fn the_map_read_again_into_its_buffers_matches_a_fresh_read() {
        let before = readable_mappings().unwrap();
        let mut buffer = MapsBuffer::for_maps_like(&before).unwrap();
        let (text_room, maps_room) = (buffer.text.capacity(), buffer.maps.capacity());
        assert!(buffer.reread());
        assert_eq!(buffer.text.capacity(), text_room);
        assert_eq!(buffer.maps.capacity(), maps_room);
        let here = std::ptr::addr_of!(buffer) as u64;
        assert!(
            mapping_of(&buffer.maps, here).is_some(),
            "the stack is mapped"
        );
    }
}
