//! The calling thread's stack bounds, learned from `/proc/self/maps` with
//! plain system calls: no lock, no allocation.
//!
//! Why not `pthread_getattr_np`: it holds the thread's descriptor lock
//! while it allocates (glibc 2.36 reallocs a cpuset, and on the main thread
//! opens `/proc/self/maps` with `fopen`). When the *program* calls it (every
//! Rust binary does at start-up, as does the JVM), its `malloc` enters
//! memtrace's hook, whose unwinder asked `pthread_getattr_np` again and
//! waited for ever on the lock the program's own call held.
//!
//! The stack is the mapping that holds the stack pointer. A thread stack's
//! mapping may have been merged by the kernel with an adjacent anonymous
//! one, so `hi` can lie above the stack's real top: still mapped and
//! readable, which is all the unwinder needs (it stops at a null return
//! address or a failed rule long before). The main thread's mapping grows
//! down on demand, so its `lo` is `hi` minus the stack size limit.

/// `[lo, hi)` of the mapping of this process that contains `sp`, from
/// `/proc/self/maps`; `None` when it cannot be read or holds no such line.
pub(crate) fn query(sp: u64) -> Option<(u64, u64)> {
    let mut finder = Finder::new(sp);
    let mut buf = [0u8; 4096];
    // SAFETY: a NUL-terminated path literal; open(2) takes no lock in user space.
    let fd = unsafe {
        libc::open(
            c"/proc/self/maps".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    loop {
        // SAFETY: reads into a local buffer of exactly `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            break;
        }
        if finder.feed(&buf[..n as usize]) {
            break;
        }
    }
    // SAFETY: closes the descriptor opened above, once.
    unsafe { libc::close(fd) };
    let (lo, hi, main_stack) = finder.found?;
    if !main_stack {
        return Some((lo, hi));
    }
    Some((hi.saturating_sub(stack_limit()).min(lo), hi))
}

/// The soft `RLIMIT_STACK`, capped at 8 GiB (unlimited reads as the cap).
fn stack_limit() -> u64 {
    const CAP: u64 = 8 << 30;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes one struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) } != 0 {
        return 0;
    }
    limit.rlim_cur.min(CAP)
}

/// Where the parser is within a line of `/proc/self/maps`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Field {
    Start,
    End,
    /// After the range: permissions, offset, device, inode, path.
    Rest,
}

/// A byte-at-a-time parser of `/proc/self/maps` that keeps no line: it
/// needs no buffer however long a path is, and input may be cut anywhere.
pub(crate) struct Finder {
    sp: u64,
    field: Field,
    start: u64,
    end: u64,
    /// The last bytes of the line, to tell `[stack]` at its end.
    tail: [u8; 7],
    /// The line's range holds `sp`.
    hit: bool,
    /// `(lo, hi, is the main thread's [stack])` once found.
    pub(crate) found: Option<(u64, u64, bool)>,
}

impl Finder {
    pub(crate) fn new(sp: u64) -> Finder {
        Finder {
            sp,
            field: Field::Start,
            start: 0,
            end: 0,
            tail: [0; 7],
            hit: false,
            found: None,
        }
    }

    /// Parses more input; `true` once the mapping is found.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match (self.field, b) {
                (_, b'\n') => {
                    if self.hit {
                        self.found = Some((self.start, self.end, &self.tail == b"[stack]"));
                        return true;
                    }
                    *self = Finder::new(self.sp);
                }
                (Field::Start, b'-') => self.field = Field::End,
                (Field::Start, _) => self.start = push_hex(self.start, b),
                (Field::End, b' ') => {
                    self.field = Field::Rest;
                    self.hit = self.start <= self.sp && self.sp < self.end;
                }
                (Field::End, _) => self.end = push_hex(self.end, b),
                (Field::Rest, _) => {
                    self.tail.copy_within(1.., 0);
                    self.tail[6] = b;
                }
            }
        }
        false
    }
}

/// `acc` with one more hexadecimal digit (anything else counts as 0: the
/// kernel writes only hex digits there).
fn push_hex(acc: u64, digit: u8) -> u64 {
    let v = (digit as char).to_digit(16).unwrap_or(0) as u64;
    acc.wrapping_shl(4) | v
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &[u8] = b"\
55d0c0000000-55d0c0021000 r--p 00000000 fd:01 1234   /usr/bin/a very long name with spaces
7f0000000000-7f0000800000 rw-p 00000000 00:00 0 
7f0000800000-7f0000801000 ---p 00000000 00:00 0 
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    fn find(sp: u64, chunk: usize) -> Option<(u64, u64, bool)> {
        let mut f = Finder::new(sp);
        for c in MAPS.chunks(chunk) {
            if f.feed(c) {
                break;
            }
        }
        f.found
    }

    #[test]
    fn finds_the_mapping_that_holds_sp_however_the_input_is_cut() {
        for chunk in [1, 2, 7, 64, MAPS.len()] {
            assert_eq!(
                find(0x7f0000123456, chunk),
                Some((0x7f0000000000, 0x7f0000800000, false))
            );
            assert_eq!(
                find(0x7ffc00020ff8, chunk),
                Some((0x7ffc00000000, 0x7ffc00021000, true))
            );
            assert_eq!(
                find(0x7f0000800000, chunk),
                Some((0x7f0000800000, 0x7f0000801000, false))
            );
            assert_eq!(find(0x1000, chunk), None);
            assert_eq!(find(0x7ffc00021000, chunk), None);
        }
    }

    #[test]
    fn this_threads_stack_holds_its_stack_pointer() {
        let local = 0u8;
        let sp = &local as *const u8 as u64;
        let (lo, hi) = query(sp).expect("a mapping holds the stack");
        assert!(lo <= sp && sp < hi, "{lo:#x} {sp:#x} {hi:#x}");
        let other = std::thread::spawn(|| {
            let local = 0u8;
            let sp = &local as *const u8 as u64;
            (sp, query(sp))
        })
        .join()
        .unwrap();
        let (sp, bounds) = other;
        let (lo, hi) = bounds.expect("a spawned thread's stack is mapped");
        assert!(lo <= sp && sp < hi);
    }
}
