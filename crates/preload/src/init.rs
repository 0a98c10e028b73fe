//! Start-up: read the environment, start the recorder, find our own code.

use std::ffi::{c_void, CStr};
use std::ops::Range;
use std::path::PathBuf;

use memtrace_recorder::plumbing::{Config, RecorderKind};

/// Runs from `.init_array` when the library is loaded, before `main`.
extern "C" fn memtrace_preload_init() {
    // The library was loaded in a process that asked for no tracing
    // (`MEMTRACE_DISABLE=1`): interpose, forward, record nothing.
    if memtrace_recorder::plumbing::disabled_by_env() {
        // Hooks may have started recording already: drop it.
        memtrace_recorder::plumbing::abandon();
        return;
    }
    let own_code = set_own_code_range();
    memtrace_recorder::plumbing::read_env_options();
    let output = std::env::var_os("MEMTRACE_OUTPUT").map(PathBuf::from);
    let dir = std::env::var_os("MEMTRACE_DIR").map_or_else(|| PathBuf::from("."), PathBuf::from);
    let follow_exec = std::env::var_os("MEMTRACE_NO_FOLLOW").is_none_or(|v| v != "1");
    // SAFETY: constructors run before main, while the process has one thread,
    // so changing the environment races with nothing.
    unsafe {
        remove_env(b"MEMTRACE_OUTPUT=");
        if !follow_exec {
            remove_self_from_ld_preload();
        }
    }
    memtrace_recorder::plumbing::start(Config {
        output,
        dir,
        recorder: RecorderKind::Preload,
        writer_thread: true,
        follow_exec,
    });
    if let Some(own_code) = own_code {
        report_foreign_allocator(&own_code);
    }
}

/// The allocator functions this library exports (see `api.rs`).
const HOOKED: [&CStr; 10] = [
    c"malloc",
    c"calloc",
    c"realloc",
    c"reallocarray",
    c"free",
    c"posix_memalign",
    c"aligned_alloc",
    c"memalign",
    c"valloc",
    c"pvalloc",
];

/// A program that defines `malloc` itself wins over `LD_PRELOAD` (the
/// executable comes first in the loader's search order): its calls never
/// reach the hooks. Says so, on stderr and in the trace, instead of
/// recording nothing in silence.
///
/// What `dlsym` returns is not always a definition: a non-PIE executable
/// that takes `free`'s address (`cc1`, or `p = free`) has an *undefined*
/// `free` in its `.dynsym` whose value is a PLT stub, and the loader makes
/// that stub `free`'s address for everyone. Calls through it still reach
/// the hooks, so only an address where the object defines a symbol of its
/// own counts (see [`defined_at`]).
fn report_foreign_allocator(own_code: &Range<u64>) {
    let mut foreign: Vec<(&str, String)> = Vec::new();
    for name in HOOKED {
        // SAFETY: dlsym reads the loader's tables; the name is NUL-terminated.
        let f = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        if f.is_null() || own_code.contains(&(f as u64)) || !defined_at(f) {
            continue;
        }
        let owner = defining_object(f).unwrap_or_else(|| "another object".into());
        foreign.push((name.to_str().unwrap_or("?"), owner));
    }
    if foreign.is_empty() {
        return;
    }
    let mut owners: Vec<&str> = foreign.iter().map(|(_, o)| o.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    let names: Vec<&str> = foreign.iter().map(|(n, _)| *n).collect();
    let (verb, pronoun) = if names.len() == 1 {
        ("is", "it")
    } else {
        ("are", "them")
    };
    memtrace_recorder::plumbing::warn(&format!(
        "{} {verb} defined in {}, which the loader binds before memtrace: \
         calls to {pronoun} are not recorded",
        names.join(", "),
        owners.join(", "),
    ));
}

/// Whether a symbol that its object defines (in one of its sections) starts
/// exactly at `addr`. `dladdr` alone is not enough: glibc's `_dl_addr`
/// also matches an undefined symbol whose value is not 0, which is just
/// the PLT stub of a non-PIE executable that takes a function's address.
fn defined_at(addr: *mut c_void) -> bool {
    /// `RTLD_DL_SYMENT` of `<dlfcn.h>`: `dladdr1` returns the symbol's entry.
    const RTLD_DL_SYMENT: libc::c_int = 1;
    let mut info: libc::Dl_info = unsafe_zeroed();
    let mut sym: *mut c_void = std::ptr::null_mut();
    // SAFETY: dladdr1 reads the loader's tables, fills `info` and, with
    // RTLD_DL_SYMENT, stores in `sym` a pointer to the matched entry of the
    // object's `.dynsym` (or null), which stays mapped with the object.
    let found = unsafe { libc::dladdr1(addr, &mut info, &mut sym, RTLD_DL_SYMENT) } != 0;
    if !found || sym.is_null() || info.dli_saddr != addr {
        return false;
    }
    // SAFETY: a non-null `sym` points to an `Elf64_Sym` in the object's
    // dynamic symbol table (x86_64 only, as the unwinder requires).
    let shndx = unsafe { (*sym.cast::<libc::Elf64_Sym>()).st_shndx };
    shndx != 0 // SHN_UNDEF
}

/// The file name of the loaded object that holds `addr`.
fn defining_object(addr: *mut c_void) -> Option<String> {
    let mut info: libc::Dl_info = unsafe_zeroed();
    // SAFETY: dladdr reads the loader's tables and fills `info`.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader.
    let name = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    (!name.is_empty()).then(|| name.into_owned())
}

#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = memtrace_preload_init;

extern "C" {
    static mut environ: *mut *mut std::ffi::c_char;
}

/// Removes the variable `prefix` (`NAME=`) from `environ`, in place.
///
/// Programs such as bash define their own `setenv`/`unsetenv`, which the
/// loader binds every caller to (ours included) and which act on the shell's
/// variable table, not on `environ`; so the array itself is edited.
///
/// # Safety
/// Only while the process has one thread (it changes the environment).
unsafe fn remove_env(prefix: &[u8]) {
    // SAFETY: environ is a NULL-terminated array of C strings; entries are
    // moved down over the removed one, the terminator included.
    unsafe {
        let mut p = environ;
        if p.is_null() {
            return;
        }
        while !(*p).is_null() {
            if std::ffi::CStr::from_ptr(*p).to_bytes().starts_with(prefix) {
                let mut q = p;
                while !(*q).is_null() {
                    *q = *q.add(1);
                    q = q.add(1);
                }
            } else {
                p = p.add(1);
            }
        }
    }
}

/// Replaces the value of `LD_PRELOAD` in `environ` with one that no longer
/// names this library (the entry is removed when nothing is left).
///
/// # Safety
/// Only while the process has one thread (it changes the environment).
unsafe fn remove_self_from_ld_preload() {
    let Some(list) = std::env::var_os("LD_PRELOAD") else {
        return;
    };
    let list = list.to_string_lossy().into_owned();
    let kept: Vec<&str> = list
        .split([' ', ':'])
        .filter(|e| !e.is_empty() && !e.contains("memtrace_preload"))
        .collect();
    // SAFETY: single-threaded, as the caller guarantees.
    unsafe {
        remove_env(b"LD_PRELOAD=");
        if kept.is_empty() {
            return;
        }
        let Ok(entry) = std::ffi::CString::new(format!("LD_PRELOAD={}", kept.join(":"))) else {
            return;
        };
        // The entry we just removed left its slot as the new terminator: put
        // the shorter list back there, followed by a new terminator, which
        // fits because removal freed exactly one slot.
        let mut p = environ;
        while !(*p).is_null() {
            p = p.add(1);
        }
        *p = entry.into_raw();
        *p.add(1) = std::ptr::null_mut();
    }
}

/// Frames inside this library are the recorder's own: find its code range
/// (also returned; `None` when the loader does not know this library).
fn set_own_code_range() -> Option<Range<u64>> {
    let mut info: libc::Dl_info = unsafe_zeroed();
    let here = set_own_code_range as *const c_void;
    // SAFETY: dladdr reads the loader's tables and fills `info`.
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fbase.is_null() {
        return None;
    }
    let base = info.dli_fbase as u64;
    let mut end = base;
    // SAFETY: dl_iterate_phdr's callback reads only the info it is given.
    unsafe extern "C" fn visit(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> i32 {
        // SAFETY: valid for the callback's duration; `data` is &mut (u64, u64).
        let (info, range) = unsafe { (&*info, &mut *(data as *mut (u64, u64))) };
        if info.dlpi_addr != range.0 {
            return 0;
        }
        // SAFETY: the loader gives dlpi_phnum headers at dlpi_phdr.
        let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
        for ph in phdrs {
            if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
                range.1 = range.1.max(info.dlpi_addr + ph.p_vaddr + ph.p_memsz);
            }
        }
        1
    }
    let mut range = (base, end);
    // SAFETY: see `visit`.
    unsafe { libc::dl_iterate_phdr(Some(visit), (&mut range as *mut (u64, u64)).cast()) };
    end = range.1;
    memtrace_recorder::plumbing::set_own_code(base..end);
    Some(base..end)
}

fn unsafe_zeroed() -> libc::Dl_info {
    libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    }
}
