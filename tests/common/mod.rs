//! Shared helpers of the end-to-end tests: build fixtures, run memtrace,
//! read its JSON report, find tagged source lines.

#![allow(dead_code)]

pub mod stress;
pub mod svg;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

/// Whether skips are failures (`MEMTRACE_TEST_STRICT=1`, set by `.ci/run`):
/// on a machine where everything the tests need was installed, a skip hides
/// a broken install.
pub fn strict() -> bool {
    std::env::var_os("MEMTRACE_TEST_STRICT").is_some_and(|v| v == "1")
}

/// Says on stderr that `test` skips and why; with `MEMTRACE_TEST_STRICT=1`
/// it fails the test instead. The caller returns right after.
pub fn skip(test: &str, why: &str) {
    assert!(
        !strict(),
        "{test}: would skip ({why}), and MEMTRACE_TEST_STRICT=1 makes that a failure"
    );
    eprintln!("{test}: SKIPPED: {why}");
}

/// Whether the effective user is root (mounting, cgroups, chown, setpriv).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A file system mounted for one test (a small tmpfs, a read-only bind
/// mount), unmounted when dropped. Needs root.
pub struct Mount(pub PathBuf);

impl Mount {
    /// Mounts a tmpfs of `size` (`4m`) at `dir`; `Err` says why not.
    pub fn tmpfs(dir: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0700"),
            "tmpfs",
            path_str(dir)?,
        ])?;
        Ok(Mount(dir.to_path_buf()))
    }

    /// Makes `dir` a read-only view of itself; `Err` says why not.
    pub fn read_only(dir: &Path) -> Result<Mount, String> {
        let path = path_str(dir)?;
        mount(&["--bind", path, path])?;
        let mounted = Mount(dir.to_path_buf());
        mount(&["-o", "remount,bind,ro", path])?;
        Ok(mounted)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn path_str(dir: &Path) -> Result<&str, String> {
    dir.to_str()
        .ok_or_else(|| format!("not UTF-8: {}", dir.display()))
}

fn mount(args: &[&str]) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Waits until `ready` holds, checking every 20 ms: a readiness signal that
/// a program gives through the file system (a file it writes). Fails the
/// test, naming `what`, when it has not held within `limit`, a bound far
/// above any normal wait, so that only a hang reaches it.
pub fn wait_until(what: &str, limit: std::time::Duration, mut ready: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The memtrace binary under test.
pub fn memtrace() -> Command {
    Command::new(env!("CARGO_BIN_EXE_memtrace"))
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh, empty directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = root().join("target/test-scratch").join(format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Compiles a fixture source with `compiler` and `flags` into `dir`.
pub fn compile(compiler: &str, source: &str, flags: &[&str], dir: &Path) -> PathBuf {
    let src = root().join(source);
    let out = dir.join(src.file_stem().expect("file name"));
    let status = Command::new(compiler)
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(status.success(), "{compiler} failed on {source}");
    out
}

/// Runs `memtrace run -q -o TRACE -- program args` in `dir`.
pub fn record(dir: &Path, trace: &str, program: &[&str]) -> Output {
    let out = memtrace()
        .current_dir(dir)
        .args(["run", "-q", "-o", trace, "--"])
        .args(program)
        .output()
        .expect("run memtrace");
    assert!(
        dir.join(trace).exists(),
        "no trace written; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `memtrace ARGS` run in `dir`, which must succeed: its stdout.
pub fn memtrace_stdout(dir: &Path, args: &[&str]) -> String {
    let out = memtrace()
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run memtrace");
    assert!(
        out.status.success(),
        "memtrace {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// `memtrace ARGS` run in `dir`, which must succeed and print JSON.
pub fn memtrace_json(dir: &Path, args: &[&str]) -> Value {
    serde_json::from_str(&memtrace_stdout(dir, args)).expect("the output is JSON")
}

/// `memtrace report --format json TRACE`, parsed.
pub fn report_json(trace: &Path) -> Value {
    let trace = trace.to_str().expect("UTF-8 path");
    memtrace_json(Path::new("."), &["report", "--format", "json", trace])
}

/// The line number of the line of `source` that holds `tag` as a whole word.
pub fn tag_line(source: &str, tag: &str) -> u64 {
    let tag = tag.trim_end();
    let text = std::fs::read_to_string(root().join(source)).expect("read source");
    let whole_word = |line: &str| {
        line.match_indices(tag).any(|(i, _)| {
            line[i + tag.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
    };
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| whole_word(l))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "tag {tag} must be on exactly one line of {source}"
    );
    hits[0] as u64
}

/// The report's site whose function is `function`.
pub fn site<'a>(report: &'a Value, function: &str) -> &'a Value {
    let sites = report["sites"].as_array().expect("sites");
    let matching: Vec<&Value> = sites.iter().filter(|s| s["function"] == function).collect();
    assert_eq!(
        matching.len(),
        1,
        "expected one site in {function}, found {}",
        matching.len()
    );
    matching[0]
}

/// Reads an unsigned number field.
pub fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Runs `cmd` with its output captured; kills its whole process group and
/// fails the test when it has not finished within `limit` (a deadlock or a
/// hang, reported as such instead of hanging the test run).
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Output {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > limit {
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            panic!("deadlock or hang: {shown} did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
