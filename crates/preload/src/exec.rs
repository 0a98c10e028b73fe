//! The exec hooks: every way a program can replace its image finishes the
//! trace first, since after `exec` neither the `atexit` handlers nor the
//! writer thread run again.
//!
//! Hooked: `execve`, `execv`, `execvp`, `execvpe`, `execl`, `execlp`,
//! `execle`, `fexecve`, `execveat`, and `syscall(SYS_execve, ...)` /
//! `syscall(SYS_execveat, ...)` through glibc's `syscall(2)` function. glibc
//! implements the list forms and `fexecve` with its internal `__execve` /
//! `execveat` system call, which no `LD_PRELOAD` library can see, so each is
//! hooked by name. Each hook finishes the trace, passes the trace name on
//! (see [`ExecEnv`]) and calls the real function; if the exec fails, the
//! process goes on untraced. `posix_spawn`, `system` and `popen` exec in a
//! child, not in this image, and need nothing.
//!
//! # What cannot be seen
//! An exec that reaches the kernel without a call through the dynamic
//! linker: a `syscall` instruction written inline (Go's runtime, inline
//! assembly, a statically linked helper), or glibc's own internal calls from
//! a function not listed here. Such an image's trace is still there (it was
//! created when recording started) but ends at the writer's last turn, up to
//! 10 ms before the exec, and has no trailer: `memtrace report` says
//! "incomplete: no trailer".
//!
//! # The C-variadic functions
//! Stable Rust cannot define a C-variadic function. `execl`, `execlp` and
//! `execle` are therefore *naked* functions (x86_64 only, like the whole
//! recorder): a few instructions that store the five argument registers next
//! to the arguments the caller passed on the stack and hand both to
//! [`exec_list`]. `syscall` is naked too, so that every other system call
//! runs exactly glibc's instructions.

use std::ffi::{c_char, c_int, c_long, CStr, CString};
use std::sync::atomic::AtomicUsize;

use crate::api::next_symbol;

type ExecveFn =
    unsafe extern "C" fn(*const c_char, *const *const c_char, *const *const c_char) -> c_int;
type FexecveFn = unsafe extern "C" fn(c_int, *const *const c_char, *const *const c_char) -> c_int;
type ExecveatFn = unsafe extern "C" fn(
    c_int,
    *const c_char,
    *const *const c_char,
    *const *const c_char,
    c_int,
) -> c_int;
static REAL_EXECVE: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVPE: AtomicUsize = AtomicUsize::new(0);
static REAL_FEXECVE: AtomicUsize = AtomicUsize::new(0);
static REAL_EXECVEAT: AtomicUsize = AtomicUsize::new(0);

/// Finishes this image's trace and calls libc's `name` (an execve-shaped
/// function, cached in `real`) with the environment passed on.
///
/// # Safety
/// `file` and `argv` as for execve; `envp` a NULL-terminated environment.
unsafe fn exec_through(
    real: &AtomicUsize,
    name: &CStr,
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let f = next_symbol(real, name);
    if f == 0 {
        return exec_unavailable();
    }
    // SAFETY: the caller passes a NULL-terminated environment.
    let env = unsafe { ExecEnv::prepare(envp) };
    // SAFETY: f is libc's `name`, whose type is ExecveFn.
    unsafe { std::mem::transmute::<usize, ExecveFn>(f)(file, argv, env.as_ptr(envp)) }
}

/// `execve(2)`: the image is about to be replaced without running atexit
/// handlers, so this trace is finished first. If the exec fails, the process
/// goes on untraced.
#[no_mangle]
pub unsafe extern "C" fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's arguments, as execve takes them.
    unsafe { exec_through(&REAL_EXECVE, c"execve", path, argv, envp) }
}

/// `execvpe(3)`: as `execve`.
#[no_mangle]
pub unsafe extern "C" fn execvpe(
    file: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    // SAFETY: the caller's arguments, as execvpe takes them.
    unsafe { exec_through(&REAL_EXECVPE, c"execvpe", file, argv, envp) }
}

/// `execv(3)`: `execve` with `environ`.
#[no_mangle]
pub unsafe extern "C" fn execv(path: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: environ is the process's NULL-terminated environment.
    unsafe { exec_through(&REAL_EXECVE, c"execve", path, argv, environ) }
}

/// `execvp(3)`: `execvpe` with `environ`.
#[no_mangle]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: *const *const c_char) -> c_int {
    // SAFETY: environ is the process's NULL-terminated environment.
    unsafe { exec_through(&REAL_EXECVPE, c"execvpe", file, argv, environ) }
}

/// `fexecve(3)`: as `execve`, for an open file (glibc calls the `execveat`
/// system call itself, unseen).
#[no_mangle]
pub unsafe extern "C" fn fexecve(
    fd: c_int,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> c_int {
    let f = next_symbol(&REAL_FEXECVE, c"fexecve");
    if f == 0 {
        return exec_unavailable();
    }
    // SAFETY: the caller passes a NULL-terminated environment.
    let env = unsafe { ExecEnv::prepare(envp) };
    // SAFETY: f is libc's fexecve, whose type is FexecveFn.
    unsafe { std::mem::transmute::<usize, FexecveFn>(f)(fd, argv, env.as_ptr(envp)) }
}

/// `execveat(2)` (glibc 2.34's wrapper): as `execve`.
#[no_mangle]
pub unsafe extern "C" fn execveat(
    dirfd: c_int,
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    flags: c_int,
) -> c_int {
    let f = next_symbol(&REAL_EXECVEAT, c"execveat");
    if f == 0 {
        return exec_unavailable();
    }
    // SAFETY: the caller passes a NULL-terminated environment.
    let env = unsafe { ExecEnv::prepare(envp) };
    // SAFETY: f is libc's execveat, whose type is ExecveatFn.
    unsafe {
        std::mem::transmute::<usize, ExecveatFn>(f)(dirfd, path, argv, env.as_ptr(envp), flags)
    }
}

/// Which list-form exec a trampoline stands for (passed to [`exec_list`]).
const EXECL: u32 = 0;
const EXECLP: u32 = 1;
const EXECLE: u32 = 2;

/// Defines the C-variadic `int NAME(const char *path, const char *arg, ...)`
/// as a naked trampoline to [`exec_list`].
///
/// On entry (System V x86_64 ABI, which passes variadic integer arguments
/// like fixed ones) `path` is in `rdi`, the list's first five entries in
/// `rsi`, `rdx`, `rcx`, `r8`, `r9`, and the rest on the caller's stack from
/// `rsp + 8` on. The trampoline makes a frame, pushes the five registers so
/// that they lie in memory in argument order at `rbp - 40`, aligns the stack
/// to 16 bytes for the call (entry `rsp` is 8 mod 16; after `push rbp` and
/// five pushes it is 8 mod 16 again, hence `sub rsp, 8`), and calls
/// `exec_list(kind, path, registers, stack)` with the stack arguments at
/// `rbp + 16`. It returns `exec_list`'s result, in `eax`, to the caller.
/// It has no CFI directives (rustc emits no `.cfi_startproc` for naked
/// functions here); a debugger follows its `rbp` frame.
macro_rules! list_exec {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[unsafe(naked)]
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, arg: *const c_char) -> c_int {
            // SAFETY: see the macro's doc: the trampoline keeps the ABI's
            // rules (callee-saved rbp restored by `leave`, stack aligned at
            // the call, result in eax) and touches only its own frame.
            std::arch::naked_asm!(
                "push rbp",
                "mov rbp, rsp",
                "push r9",
                "push r8",
                "push rcx",
                "push rdx",
                "push rsi",
                "sub rsp, 8",
                "mov rsi, rdi",
                "lea rdx, [rbp - 40]",
                "lea rcx, [rbp + 16]",
                "mov edi, {kind}",
                "call {collect}",
                "leave",
                "ret",
                kind = const $kind,
                collect = sym exec_list,
            )
        }
    };
}

list_exec!(
    /// `execl(3)`: `execv` with the arguments listed.
    execl,
    EXECL
);
list_exec!(
    /// `execlp(3)`: `execvp` with the arguments listed.
    execlp,
    EXECLP
);
list_exec!(
    /// `execle(3)`: `execve` with the arguments listed, the environment after
    /// their NULL.
    execle,
    EXECLE
);

/// Entries of an argument list kept on the stack: more need an allocation
/// (glibc's own `execl` uses a variable-length array).
const STACK_ARGS: usize = 64;

/// The body of `execl`, `execlp` and `execle`: gathers the argument list
/// that the trampoline found (`registers` holds its first five entries,
/// `stack` the caller's stack arguments, the sixth entry on) into an argv
/// array, and goes the way of `execv`, `execvp` or `execve`.
///
/// The array stays on this function's stack when it is short, so that a
/// `vfork` child, which shares the parent's memory, allocates nothing.
///
/// # Safety
/// Called only by the trampolines, with the caller's arguments as the C
/// function's contract gives them: a NULL-terminated list (for `execle`
/// followed by the environment).
unsafe extern "C" fn exec_list(
    kind: u32,
    path: *const c_char,
    registers: *const *const c_char,
    stack: *const *const c_char,
) -> c_int {
    // SAFETY: entry i of the list: one of the five saved registers, else
    // the caller's stack argument i - 5. The contract says the list goes up
    // to its NULL (and for execle one entry more), and no entry past that
    // is read.
    let entry = |i: usize| unsafe {
        if i < 5 {
            *registers.add(i)
        } else {
            *stack.add(i - 5)
        }
    };
    let mut n = 0;
    while !entry(n).is_null() {
        n += 1;
    }
    let mut short = [std::ptr::null::<c_char>(); STACK_ARGS];
    let mut long = Vec::new();
    let argv: &mut [*const c_char] = if n < STACK_ARGS {
        &mut short[..=n]
    } else {
        long.resize(n + 1, std::ptr::null());
        &mut long
    };
    for (i, slot) in argv.iter_mut().enumerate().take(n) {
        *slot = entry(i);
    }
    let argv = argv.as_ptr();
    // SAFETY: argv is NULL-terminated and lives until the call returns; the
    // environment is `environ` or execle's, the entry after the list's NULL.
    unsafe {
        match kind {
            EXECLP => exec_through(&REAL_EXECVPE, c"execvpe", path, argv, environ),
            EXECLE => exec_through(&REAL_EXECVE, c"execve", path, argv, entry(n + 1).cast()),
            _ => exec_through(&REAL_EXECVE, c"execve", path, argv, environ),
        }
    }
}

/// `syscall(2)`, C-variadic `long syscall(long number, ...)`: glibc's own
/// instructions (number to `rax`, the six arguments shifted into the system
/// call registers, the sixth from the stack; -4095..-1 is an error, stored
/// in `errno`, and -1 returned), except that `SYS_execve` and
/// `SYS_execveat` jump to [`syscall_exec`] first, which takes the same
/// registers as its arguments.
#[unsafe(naked)]
#[no_mangle]
pub unsafe extern "C" fn syscall(number: c_long) -> c_long {
    // SAFETY: the same instructions as glibc's syscall (sysdeps/unix/sysv/
    // linux/x86_64/syscall.S), which read the sixth argument at rsp + 8
    // whether or not the caller passed one; the two jumps are tail calls
    // with the stack as the caller left it.
    std::arch::naked_asm!(
        "cmp rdi, {execve}",
        "je {exec}",
        "cmp rdi, {execveat}",
        "je {exec}",
        "mov rax, rdi",
        "mov rdi, rsi",
        "mov rsi, rdx",
        "mov rdx, rcx",
        "mov r10, r8",
        "mov r8, r9",
        "mov r9, [rsp + 8]",
        "syscall",
        "cmp rax, -4095",
        "jae 2f",
        "ret",
        "2:",
        "neg eax",
        "mov edi, eax",
        "jmp {error}",
        execve = const libc::SYS_execve,
        execveat = const libc::SYS_execveat,
        exec = sym syscall_exec,
        error = sym set_errno,
    )
}

/// `syscall(SYS_execve, path, argv, envp)` or `syscall(SYS_execveat, dirfd,
/// path, argv, envp, flags)`: finishes the trace, then makes the system call
/// with the environment passed on.
///
/// # Safety
/// Reached only from [`syscall`], with the caller's arguments.
unsafe extern "C" fn syscall_exec(
    number: c_long,
    a1: c_long,
    a2: c_long,
    a3: c_long,
    a4: c_long,
    a5: c_long,
) -> c_long {
    let execve = number == libc::SYS_execve;
    let envp = (if execve { a3 } else { a4 }) as *const *const c_char;
    // SAFETY: the environment argument of execve or execveat.
    let env = unsafe { ExecEnv::prepare(envp) };
    let passed = env.as_ptr(envp) as c_long;
    let (a3, a4) = if execve { (passed, a4) } else { (a3, passed) };
    let result: c_long;
    // SAFETY: the system call the caller asked for, with its arguments, the
    // environment replaced by one that lives until it returns; `syscall`
    // clobbers rcx and r11 and touches no stack.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") number => result,
            in("rdi") a1,
            in("rsi") a2,
            in("rdx") a3,
            in("r10") a4,
            in("r8") a5,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if (-4095..0).contains(&result) {
        return set_errno(-result as c_int);
    }
    result
}

/// Stores `e` in this thread's `errno` and returns -1: a failed system call.
extern "C" fn set_errno(e: c_int) -> c_long {
    // SAFETY: __errno_location gives this thread's errno.
    unsafe { *libc::__errno_location() = e };
    -1
}

/// The environment given to the next image: the caller's, with the trace
/// name of this process passed on (see `finish_before_exec`).
struct ExecEnv {
    output: Option<CString>,
    pointers: Vec<*const c_char>,
}

impl ExecEnv {
    /// Finishes this image's trace and builds the environment for the next.
    ///
    /// # Safety
    /// `envp` is NULL or a NULL-terminated array of C strings.
    unsafe fn prepare(envp: *const *const c_char) -> ExecEnv {
        let Some(output) = memtrace_recorder::plumbing::finish_before_exec() else {
            return ExecEnv {
                output: None,
                pointers: Vec::new(),
            };
        };
        let mut entry = b"MEMTRACE_OUTPUT=".to_vec();
        entry.extend_from_slice(output.as_os_str().as_encoded_bytes());
        let Ok(output) = CString::new(entry) else {
            return ExecEnv {
                output: None,
                pointers: Vec::new(),
            };
        };
        let mut pointers = Vec::new();
        let mut p = envp;
        // SAFETY: walks the caller's NULL-terminated array.
        while !p.is_null() && unsafe { !(*p).is_null() } {
            // SAFETY: each entry is a C string.
            let var = unsafe { CStr::from_ptr(*p) };
            if !var.to_bytes().starts_with(b"MEMTRACE_OUTPUT=") {
                pointers.push(var.as_ptr());
            }
            // SAFETY: still inside the array (the terminator was not reached).
            p = unsafe { p.add(1) };
        }
        pointers.push(output.as_ptr());
        pointers.push(std::ptr::null());
        ExecEnv {
            output: Some(output),
            pointers,
        }
    }

    /// The environment to pass: the rebuilt one, or the caller's unchanged.
    fn as_ptr(&self, original: *const *const c_char) -> *const *const c_char {
        if self.pointers.is_empty() {
            original
        } else {
            self.pointers.as_ptr()
        }
    }
}

/// Dropped only when the exec returned, i.e. failed: the trace moves back
/// to the explicit name, and `errno` stays the exec's.
impl Drop for ExecEnv {
    fn drop(&mut self) {
        if self.output.is_some() {
            // SAFETY: __errno_location gives this thread's errno.
            let errno = unsafe { *libc::__errno_location() };
            memtrace_recorder::plumbing::exec_failed();
            set_errno(errno);
        }
    }
}

extern "C" {
    static environ: *const *const c_char;
}

/// What an exec call returns when libc's own could not be found.
fn exec_unavailable() -> c_int {
    set_errno(libc::ENOSYS) as c_int
}
