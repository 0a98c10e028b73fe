//! A full disk while the trace is written: recording ends with one message,
//! the program runs on to its own end (output and exit status unchanged,
//! no recorder thread spinning), and the trace written so far is readable.
//!
//! Needs root, to mount a 1 MiB tmpfs; otherwise the test says it skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{compile, memtrace, memtrace_json, num, output_within, scratch, site};

const SOURCE: &str = "fixtures/c/disk_full.c";
const N: u64 = 300_000;

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallTmpfs(PathBuf);

impl SmallTmpfs {
    /// Mounts a tmpfs of `size` at `dir`; `Err` says why not.
    fn mount(dir: &Path, size: &str) -> Result<SmallTmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallTmpfs(dir.to_path_buf()))
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_ends_recording_with_one_message_and_the_program_runs_on() {
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if uid != 0 {
        eprintln!("disk_full: SKIPPED: mounting a small tmpfs needs root (euid {uid})");
        return;
    }
    let dir = scratch("disk-full");
    let exe = compile("cc", SOURCE, &["-O0", "-g"], &dir);
    let small = match SmallTmpfs::mount(&dir.join("small"), "1m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("disk_full: SKIPPED: cannot mount a tmpfs: {why}");
            return;
        }
    };
    let trace = small.0.join("t.trace");
    // Uncompressed blocks fill the 1 MiB quickly: 600,000 calls are about 4 MB.
    let out = output_within(
        memtrace()
            .current_dir(&dir)
            .env("MEMTRACE_COMPRESSION", "0")
            .args(["run", "-q", "-o"])
            .arg(&trace)
            .arg("--")
            .arg(&exe)
            .arg(N.to_string()),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(7), "the program's own exit status");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("allocated {N}\nidle: yes\n")
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    let prefix = format!(
        "memtrace: writing the trace failed: No space left on device (os error 28); \
         recording stopped, the program continues; the trace {} is incomplete \
         (readable up to byte ",
        trace.display()
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let readable: u64 = stderr
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(")\n"))
        .unwrap_or_else(|| panic!("unexpected message: {stderr}"))
        .parse()
        .unwrap();
    let size = std::fs::metadata(&trace).unwrap().len();
    assert!(readable > 0 && readable <= size, "{readable} of {size}");

    // What was written before the disk filled up reads back, marked as cut.
    let report = memtrace_json(
        &dir,
        &["report", "--format", "json", trace.to_str().unwrap()],
    );
    assert_eq!(report["trace"]["complete"], false);
    if size > readable {
        assert_eq!(num(&report["trace"], "truncated_at"), readable);
    } else {
        assert_eq!(report["trace"]["truncated_at"], serde_json::Value::Null);
    }
    let fill = site(&report, "fill_site");
    let recorded = num(fill, "allocations");
    assert!(
        recorded > 0 && recorded < N,
        "{recorded} of {N} allocations"
    );
    // Each recorded allocation is the fixture's i-th, i = 0, 1, ...: sizes
    // 16 + i % 1000, so the bytes follow from the count.
    let expected_bytes: u64 = (0..recorded).map(|i| 16 + i % 1000).sum();
    assert_eq!(num(fill, "bytes_allocated"), expected_bytes);
    drop(small);
}
