//! Shared helpers: locating the workspace and its target directory, building
//! memtrace and the fixtures, running commands with wall time and peak RSS,
//! and printing tables.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Where things are: the workspace, its target directory and our outputs.
pub struct Paths {
    /// The workspace root (the directory holding the top `Cargo.toml`).
    pub root: PathBuf,
    /// `target/memtrace-report`: reports written by the tasks.
    pub report: PathBuf,
    /// The same directory, opened once: the tasks' files are written
    /// through it, never through a link planted there (`memtrace-safe-write`).
    pub out: memtrace_safe_write::OutDir,
    /// `target/memtrace-report/bin`: compiled fixtures.
    pub bin: PathBuf,
    /// `target/memtrace-report/traces`: traces and heaptrack files.
    pub traces: PathBuf,
    /// `target/release`: release binaries.
    pub release: PathBuf,
    /// `target/release/memtrace`.
    pub memtrace: PathBuf,
}

impl Paths {
    /// Finds the workspace and its target directory (`cargo metadata`, which
    /// honours `CARGO_TARGET_DIR` and `build.target-dir`) and creates the
    /// output directories.
    pub fn locate() -> Result<Paths> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("xtask has no parent directory")?
            .to_path_buf();
        let target = target_dir(&root)?;
        let report = target.join("memtrace-report");
        let bin = report.join("bin");
        let traces = report.join("traces");
        let out = memtrace_safe_write::OutDir::create(&report)?;
        for dir in [&bin, &traces] {
            memtrace_safe_write::OutDir::create(dir)?;
        }
        let release = target.join("release");
        let memtrace = release.join("memtrace");
        Ok(Paths {
            root,
            report,
            out,
            bin,
            traces,
            release,
            memtrace,
        })
    }

    /// Writes `text` to the file `name` of the report directory, replacing
    /// it (see `memtrace-safe-write`); its path is returned.
    pub fn write(&self, name: &str, text: impl AsRef<[u8]>) -> Result<PathBuf> {
        Ok(self.out.write(name, text.as_ref())?)
    }

    /// A fixture source file, e.g. `fixture("c/sites.c")`.
    pub fn fixture(&self, rel: &str) -> PathBuf {
        self.root.join("fixtures").join(rel)
    }
}

/// The cargo binary that runs us (`$CARGO`), or `cargo` from `PATH`.
fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The workspace's target directory, as `cargo metadata` reports it.
fn target_dir(root: &Path) -> Result<PathBuf> {
    let out = Command::new(cargo())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("cargo metadata printed invalid JSON")?;
    match meta["target_directory"].as_str() {
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(root.join("target")),
    }
}

/// `cargo build --release -p memtrace` (output goes to the terminal).
pub fn build_memtrace(paths: &Paths) -> Result<()> {
    build_release(paths, &["memtrace"])
}

/// `cargo build --release -p PACKAGE...` (output goes to the terminal);
/// checks that `target/release/memtrace` exists afterwards when `memtrace` is
/// one of the packages.
pub fn build_release(paths: &Paths, packages: &[&str]) -> Result<()> {
    let mut cmd = Command::new(cargo());
    cmd.args(["build", "--release"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    cmd.arg("--manifest-path")
        .arg(paths.root.join("Cargo.toml"));
    let shown = format!(
        "cargo build --release {}",
        packages
            .iter()
            .map(|p| format!("-p {p}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("xtask: {shown}");
    let status = cmd.status().context("cannot run cargo build")?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    if packages.contains(&"memtrace") && !paths.memtrace.exists() {
        bail!("the build produced no {}", paths.memtrace.display());
    }
    Ok(())
}

/// Compiles one fixture source into `target/memtrace-report/bin/<name>`.
pub fn compile(
    paths: &Paths,
    compiler: &str,
    flags: &[&str],
    src: &str,
    name: &str,
) -> Result<PathBuf> {
    let out = paths.bin.join(name);
    let mut cmd = Command::new(compiler);
    cmd.args(flags).arg("-o").arg(&out).arg(paths.fixture(src));
    eprintln!("xtask: {}", show(&cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {compiler}"))?;
    if !status.success() {
        bail!("{} failed ({status})", show(&cmd));
    }
    Ok(out)
}

/// Builds the recorder benchmark, `fixtures/c/bench_alloc.c`, as the bench
/// and bigtrace jobs measure it.
pub fn compile_bench_alloc(paths: &Paths) -> Result<PathBuf> {
    compile(
        paths,
        "gcc",
        &["-O2", "-g", "-pthread"],
        "c/bench_alloc.c",
        "bench_alloc",
    )
}

/// `memtrace report --format json TRACE`, parsed.
pub fn report_json(paths: &Paths, trace: &Path) -> Result<serde_json::Value> {
    let json = output(
        Command::new(&paths.memtrace)
            .args(["report", "--format", "json"])
            .arg(trace),
    )?;
    serde_json::from_str(&json).context("memtrace report printed invalid JSON")
}

/// The full path of `name` found in `PATH`, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
}

/// A command line as a shell would show it (environment overrides first).
pub fn show(cmd: &Command) -> String {
    let quote = |s: &OsStr| {
        let s = s.to_string_lossy();
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+%@".contains(c))
        {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    let mut parts: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| v.map(|v| format!("{}={}", k.to_string_lossy(), quote(v))))
        .collect();
    parts.push(quote(cmd.get_program()));
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

/// What one measured run of a command gave.
pub struct Measured {
    /// How it ended.
    pub status: ExitStatus,
    /// Wall time from spawn to reaping.
    pub wall: Duration,
    /// CPU time, user and system, of the child and the descendants it
    /// waited for (`wait4`'s rusage).
    pub cpu: Duration,
    /// Peak resident set size in KiB: `ru_maxrss` from `wait4`, the largest
    /// of the child and of every descendant it waited for.
    pub max_rss_kib: u64,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Measured {
    /// Fails with the command line and the end of its stderr unless it exited 0.
    pub fn ok(self, cmd: &Command) -> Result<Measured> {
        if !self.status.success() {
            let tail: Vec<&str> = self.stderr.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "`{}` failed ({}); stderr ends with:\n{}",
                show(cmd),
                self.status,
                tail.join("\n")
            );
        }
        Ok(self)
    }
}

/// Runs `cmd` in a fresh child (stdin from /dev/null, stdout and stderr
/// captured) and measures its wall time and peak RSS with `wait4`, so every
/// measurement is of one child and its own descendants only.
pub fn measure(cmd: &mut Command) -> Result<Measured> {
    Ok(measure_within(cmd, None)?.expect("no time limit"))
}

/// [`measure`], with a time limit: the child runs in a process group of its
/// own, and when it has not ended within `limit` the whole group is killed
/// and the answer is `None` (a hang or a deadlock).
pub fn measure_within(cmd: &mut Command, limit: Option<Duration>) -> Result<Option<Measured>> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if limit.is_some() {
        std::os::unix::process::CommandExt::process_group(cmd, 0);
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{}`", show(cmd)))?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let pid = child.id() as libc::pid_t;
    let mut raw_status = 0;
    // SAFETY: rusage is plain data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut timed_out = false;
    loop {
        let flags = if limit.is_some() && !timed_out {
            libc::WNOHANG
        } else {
            0
        };
        // SAFETY: waits for our own child; the pointers are to live locals.
        let r = unsafe { libc::wait4(pid, &mut raw_status, flags, &mut usage) };
        if r == pid {
            break;
        }
        if r == 0 {
            if limit.is_some_and(|l| start.elapsed() > l) {
                // SAFETY: signals the process group that we created for the child.
                unsafe { libc::killpg(pid, libc::SIGKILL) };
                timed_out = true;
            } else {
                std::thread::sleep(Duration::from_millis(20));
            }
            continue;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e).with_context(|| format!("wait4 for `{}`", show(cmd)));
        }
    }
    let wall = start.elapsed();
    // The child is reaped: std must not wait for it again (dropping a Child
    // does not wait).
    drop(child);
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if timed_out {
        return Ok(None);
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    Ok(Some(Measured {
        status: ExitStatus::from_raw(raw_status),
        wall,
        cpu: time(usage.ru_utime) + time(usage.ru_stime),
        max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        stdout,
        stderr,
    }))
}

/// Runs a command to completion and returns its stdout; fails unless it exits 0.
pub fn output(cmd: &mut Command) -> Result<String> {
    let m = measure(cmd)?;
    Ok(m.ok(cmd)?.stdout)
}

/// The median of some values (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `1.23 s` / `456 ms`.
pub fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1000.0)
    }
}

/// A byte count in binary units: `12.3 MiB`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A table printed aligned on the terminal and as Markdown in reports.
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
    /// Columns aligned left besides the first (text rather than numbers).
    left: Vec<usize>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            left: vec![0],
        }
    }

    /// Aligns these columns left as well as the first (for text columns).
    pub fn align_left(&mut self, columns: &[usize]) {
        self.left.extend_from_slice(columns);
    }

    /// Adds a row (missing cells print empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn widths(&self) -> Vec<usize> {
        let mut w: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate().take(w.len()) {
                w[i] = w[i].max(c.chars().count());
            }
        }
        w
    }

    fn cell(&self, row: &[String], i: usize) -> String {
        row.get(i).cloned().unwrap_or_default()
    }

    /// Aligned plain text: the first column (and those of `align_left`) left,
    /// the others right.
    pub fn text(&self) -> String {
        let w = self.widths();
        let mut out = String::new();
        let line = |cells: &[String], out: &mut String| {
            let parts: Vec<String> = (0..w.len())
                .map(|i| {
                    let c = self.cell(cells, i);
                    if self.left.contains(&i) {
                        format!("{c:<width$}", width = w[i])
                    } else {
                        format!("{c:>width$}", width = w[i])
                    }
                })
                .collect();
            let _ = writeln!(out, "{}", parts.join("  ").trim_end());
        };
        line(&self.headers, &mut out);
        let _ = writeln!(
            out,
            "{}",
            w.iter()
                .map(|&n| "-".repeat(n))
                .collect::<Vec<_>>()
                .join("  ")
        );
        for r in &self.rows {
            line(r, &mut out);
        }
        out
    }

    /// A GitHub-flavoured Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let esc = |s: &str| s.replace('|', "\\|");
        let _ = writeln!(
            out,
            "| {} |",
            self.headers
                .iter()
                .map(|h| esc(h))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let seps: Vec<&str> = (0..self.headers.len())
            .map(|i| {
                if self.left.contains(&i) {
                    "---"
                } else {
                    "---:"
                }
            })
            .collect();
        let _ = writeln!(out, "| {} |", seps.join(" | "));
        for r in &self.rows {
            let cells: Vec<String> = (0..self.headers.len())
                .map(|i| esc(&self.cell(r, i)))
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out
    }
}

/// Removes a file if it exists (a missing file is fine).
pub fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The size of a file in bytes.
pub fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .len())
}

/// The heaptrack data file written for `-o prefix`: `prefix.zst`, `prefix.gz`
/// or `prefix` itself, whichever exists.
pub fn heaptrack_file(prefix: &Path) -> Result<PathBuf> {
    for ext in ["zst", "gz"] {
        let p = PathBuf::from(format!("{}.{ext}", prefix.display()));
        if p.exists() {
            return Ok(p);
        }
    }
    if prefix.exists() {
        return Ok(prefix.to_path_buf());
    }
    bail!("heaptrack wrote no data file for {}", prefix.display())
}

/// Removes any heaptrack data file left for `-o prefix`.
pub fn remove_heaptrack_files(prefix: &Path) -> Result<()> {
    for ext in ["zst", "gz"] {
        remove_file(&PathBuf::from(format!("{}.{ext}", prefix.display())))?;
    }
    remove_file(prefix)
}

/// Machine description for reports: cores, CPU model, kernel.
pub fn machine_info() -> Vec<(String, String)> {
    let nproc =
        std::thread::available_parallelism().map_or_else(|_| "?".to_string(), |n| n.to_string());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string());
    let kernel = Command::new("uname")
        .arg("-srm")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    vec![
        ("nproc".into(), nproc),
        ("CPU".into(), cpu),
        ("kernel".into(), kernel),
    ]
}

/// The first line of `tool --version`, or "unknown".
pub fn version(tool: &Path) -> String {
    Command::new(tool)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}
