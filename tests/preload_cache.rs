//! `memtrace run` when the preload library cannot be written to its cache
//! (a full or read-only disk): one line says so and the program runs
//! untraced, with its own output and exit status; `--require-trace` (and
//! `--check-leaks`) make it an error, exit 2, and the program does not run.
//! Nothing is left behind in the cache.
//!
//! Needs root, to mount a tmpfs and a read-only bind mount (mode bits do
//! not stop root from writing); otherwise the tests say why they skip (a
//! failure with `MEMTRACE_TEST_STRICT=1`).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{memtrace, output_within, scratch, Mount};

/// A program that prints a line and exits 3.
const PROGRAM: [&str; 3] = ["sh", "-c", "echo untraced; exit 3"];

/// `memtrace run [EXTRA] -- PROGRAM` in `dir` with `XDG_CACHE_HOME=cache`.
fn run(dir: &Path, cache: &Path, extra: &[&str]) -> std::process::Output {
    output_within(
        memtrace()
            .current_dir(dir)
            .env("XDG_CACHE_HOME", cache)
            .env_remove("MEMTRACE_PRELOAD")
            .arg("run")
            .args(extra)
            .arg("--")
            .args(PROGRAM),
        Duration::from_secs(60),
    )
}

/// The cache's `memtrace` directory holds nothing, and `dir` no trace.
fn nothing_left(dir: &Path, cache: &Path) {
    let left: Vec<_> = std::fs::read_dir(cache.join("memtrace"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in the cache: {left:?}");
    let traces: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("memtrace."))
        .collect();
    assert!(traces.is_empty(), "traces: {traces:?}");
}

/// Untraced with a one-line message; with `--require-trace` or
/// `--check-leaks`, exit 2 and the program not run.
fn check_unwritable_cache(dir: &Path, cache: &Path, why: &str) {
    let tmp = cache.join("memtrace/.preload-");
    let out = run(dir, cache, &[]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "untraced\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let prefix = format!(
        "memtrace: cannot write the preload library to {}",
        tmp.display()
    );
    assert!(
        stderr.starts_with(&prefix)
            && stderr.ends_with(&format!(
                ".tmp: {why}; running sh untraced (--require-trace makes this an error)\n"
            ))
            && stderr.lines().count() == 1,
        "{stderr}"
    );
    nothing_left(dir, cache);

    for flag in ["--require-trace", "--check-leaks"] {
        let out = run(dir, cache, &[flag]);
        assert_eq!(out.status.code(), Some(2), "{flag}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with(&prefix)
                && stderr.ends_with(&format!(".tmp: {why}\n"))
                && stderr.lines().count() == 1,
            "{flag}: {stderr}"
        );
        nothing_left(dir, cache);
    }
}

#[test]
fn a_full_cache_runs_the_program_untraced() {
    let test = "a_full_cache_runs_the_program_untraced";
    if !common::is_root() {
        common::skip(test, "mounting a small tmpfs needs root");
        return;
    }
    let dir = scratch("cache-full");
    let cache = dir.join("cache");
    // The library is about 20 MB: it cannot fit in 4 MiB.
    let mounted = match Mount::tmpfs(&cache, "4m") {
        Ok(m) => m,
        Err(why) => return common::skip(test, &format!("cannot mount a tmpfs: {why}")),
    };
    std::fs::create_dir(cache.join("memtrace")).unwrap();
    check_unwritable_cache(&dir, &cache, "No space left on device (os error 28)");
    drop(mounted);
}

#[test]
fn a_read_only_cache_runs_the_program_untraced() {
    let test = "a_read_only_cache_runs_the_program_untraced";
    if !common::is_root() {
        common::skip(test, "a read-only bind mount needs root");
        return;
    }
    let dir = scratch("cache-ro");
    let cache = dir.join("cache");
    std::fs::create_dir_all(cache.join("memtrace")).unwrap();
    let mounted = match Mount::read_only(&cache) {
        Ok(m) => m,
        Err(why) => return common::skip(test, &format!("cannot bind-mount: {why}")),
    };
    check_unwritable_cache(&dir, &cache, "Read-only file system (os error 30)");
    drop(mounted);
}
