//! The trace's file: its name, its creation with the header, and its move
//! when the process execs with an explicit name (`memtrace run -o FILE`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use memtrace_format::{ClockSync, Codec, Header, Writer, WriterBuffers};

use crate::clock::{self, monotonic_ns, ticks};
use crate::session::Config;
use crate::sink::TraceFile;
use crate::spin::SpinLock;

/// Where [`move_for_exec`] moved the explicit name's file (the explicit
/// name, the default name), so that a failed exec can move it back.
static MOVED_FOR_EXEC: SpinLock<Option<(PathBuf, PathBuf)>> = SpinLock::new(None);

/// Creates the trace file `config` names (or the first free default name)
/// and writes the preamble and the header block into it; a clock sync
/// waits in the writer for the first turn. The path is returned too. The
/// writer gets `buffers`, allocated while memory was there (an error of
/// kind `OutOfMemory` when the header still cannot get memory).
pub(crate) fn open_trace(
    config: &Config,
    buffers: WriterBuffers,
) -> io::Result<(Writer<TraceFile>, PathBuf)> {
    // SAFETY: getpid/getppid have no preconditions.
    let (pid, ppid) = unsafe { (libc::getpid() as u32, libc::getppid() as u32) };
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let cmdline: Vec<String> = std::fs::read("/proc/self/cmdline")
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let (file, path) = match &config.output {
        Some(path) => (create_new(path)?, path.clone()),
        None => {
            let base = default_path(&config.dir, &exe, pid);
            first_free_name(&base, |p| create_new(p).map(|f| (f, p.to_path_buf())))?
        }
    };
    announce(pid, &path);
    let header = Header {
        pid,
        ppid,
        exe,
        cmdline,
        start_unix_ns: clock::unix_ns(),
        // SAFETY: sysconf has no preconditions.
        page_size: unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32,
        pointer_size: std::mem::size_of::<usize>() as u8,
        ticks: clock::source(),
        recorder: config.recorder,
        latency_measured: crate::timing(),
        family: std::env::var("MEMTRACE_FAMILY")
            .ok()
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .unwrap_or(0),
    };
    // MEMTRACE_COMPRESSION: zstd level (default 1), 0 for none.
    let codec = match std::env::var("MEMTRACE_COMPRESSION")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        Some(0) => Codec::Raw,
        Some(level) => Codec::Zstd(level),
        None => Codec::Zstd(1),
    };
    // The header block is stored raw: compressing it would make zstd's
    // context now, from the program's main thread before `main` (in the
    // preload constructor), in glibc's main arena among the program's
    // blocks, which changes their layout (`memtrace frag`, the scatter of
    // `memtrace cache`). The writer thread makes it at its first compressed
    // block, in its own arena, as it did when the file was created there.
    let mut writer = Writer::with_buffers(TraceFile::new(file)?, &header, Codec::Raw, buffers)?;
    writer.set_codec(codec);
    writer.set_auto_seal(false);
    writer.clock_sync(ClockSync {
        ticks: ticks(),
        mono_ns: monotonic_ns(),
    })?;
    Ok((writer, path))
}

/// Tells `memtrace run` the name of the trace just created, so that it
/// never guesses from a directory listing: `PID PATH\0` appended to the
/// file `MEMTRACE_TRACE_LIST` names (`src/trace_list.rs`). `run` made that
/// file, empty and private, before starting the program; it is opened
/// without `O_CREAT` and with `O_NOFOLLOW | O_NONBLOCK`, used only if it is
/// a regular file, and written with one `write` (`O_APPEND`: the records
/// of processes that write at once do not mix). Best effort: `run` says
/// when it was told of no trace.
fn announce(pid: u32, path: &Path) {
    use std::io::Write as _;
    use std::os::unix::ffi::OsStrExt as _;
    let Some(list) = std::env::var_os("MEMTRACE_TRACE_LIST") else {
        return;
    };
    let Ok(file) = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&list)
    else {
        return;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return;
    }
    let mut record = format!("{pid} ").into_bytes();
    record.extend_from_slice(path.as_os_str().as_bytes());
    record.push(0);
    let _ = (&file).write(&record);
}

/// `DIR/memtrace.<program>.<pid>.trace`.
fn default_path(dir: &Path, exe: &str, pid: u32) -> PathBuf {
    dir.join(format!("memtrace.{}.{pid}.trace", program_name(exe)))
}

/// Tries `base`, then `base.1`, `base.2`, ... while the name is taken.
fn first_free_name<T>(base: &Path, mut make: impl FnMut(&Path) -> io::Result<T>) -> io::Result<T> {
    let mut attempt = make(base);
    let mut n = 1;
    while matches!(&attempt, Err(e) if e.kind() == io::ErrorKind::AlreadyExists) && n < 100 {
        attempt = make(&base.with_extension(format!("trace.{n}")));
        n += 1;
    }
    attempt
}

/// Moves the finished trace at `explicit` to this image's default name
/// beside it, so that the explicit name is free for the next image.
pub(crate) fn move_for_exec(explicit: &Path) {
    let exe = std::fs::read_link("/proc/self/exe")
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() } as u32;
    let dir = explicit
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let base = default_path(&dir, &exe, pid);
    let moved = first_free_name(&base, |p| {
        std::fs::hard_link(explicit, p).map(|()| p.to_path_buf())
    });
    if let Ok(moved) = moved {
        let _ = std::fs::remove_file(explicit);
        *MOVED_FOR_EXEC.lock() = Some((explicit.to_path_buf(), moved));
    }
}

/// Undoes [`move_for_exec`]: the exec failed and this image goes on.
pub(crate) fn move_back_after_failed_exec() {
    if let Some((explicit, moved)) = MOVED_FOR_EXEC.lock().take() {
        if std::fs::hard_link(&moved, &explicit).is_ok() {
            let _ = std::fs::remove_file(&moved);
        }
    }
}

/// The executable's file name, made safe for a file name.
fn program_name(exe: &str) -> String {
    let name = exe.rsplit('/').next().unwrap_or("program");
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "program".into()
    } else {
        clean
    }
}

/// Creates a file that must not exist yet, mode 0600, not following a symlink.
fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}
