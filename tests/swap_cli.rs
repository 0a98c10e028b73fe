//! `memtrace swap --pid`: attaching, detaching, and the errors for a pid
//! that does not exist or may not be read.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::Child;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{compile, memtrace, output_within, scratch};
use serde_json::Value;

#[test]
fn attaches_to_a_running_process_and_detaches_when_it_exits() {
    let dir = scratch("swap-pid");
    let walker = compile("cc", "fixtures/c/walker.c", &["-O2"], &dir);
    // 16 MiB for 1.5 s: it fits, so it stays ok.
    let mut target = Command::new(&walker)
        .args(["anon", "16", "1.5"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let json = dir.join("attached.json");
    // It stops when the walker ends (about 1.5 s): a hang fails the test.
    let out = output_within(
        memtrace()
            .args(["swap", "--interval", "50", "--pid"])
            .arg(target.id().to_string())
            .arg("-o")
            .arg(&json),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(target.wait().unwrap().success());
    let run: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(run["schema"], "memtrace-swap/1");
    assert_eq!(run["pid"], target.id());
    assert_eq!(run["command"].as_array().unwrap().len(), 0);
    let summary = &run["summary"];
    assert_eq!(summary["worst_state"], "ok");
    assert_eq!(summary["peak_swap_kib"], 0);
    // The walker's 16 MiB were resident at the peak.
    assert!(summary["peak_rss_kib"].as_u64().unwrap() >= 16 * 1024);
    // The last sample is of the exited process: nothing resident.
    let samples = run["samples"].as_array().unwrap();
    assert!(samples.len() >= 3);
    assert_eq!(samples.last().unwrap()["rss_anon_kib"], 0);
    // Plain status lines, one per interval, then the summary.
    let stderr = String::from_utf8(out.stderr).unwrap();
    let status_lines = stderr
        .lines()
        .filter(|l| l.contains(" pressure some "))
        .count();
    assert_eq!(status_lines, samples.len() - 1);
    assert_eq!(
        stderr
            .lines()
            .filter(|l| l.starts_with("verdict: ok ("))
            .count(),
        1
    );
}

/// Interrupts a monitor once it is watching: its first status line on
/// stderr (printed after it has blocked the signals it handles) is the
/// readiness signal. Returns its exit code and the rest of its stderr.
fn interrupt_when_watching(mut monitor: Child) -> (Option<i32>, String) {
    let mut stderr = BufReader::new(monitor.stderr.take().expect("piped stderr"));
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains(" pressure some "), "{first:?}");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let status = monitor.wait().unwrap();
    (status.code(), rest)
}

/// The summary's verdict line.
fn verdict_line(stderr: &str) -> &str {
    let verdicts: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("verdict: "))
        .collect();
    assert_eq!(verdicts.len(), 1, "{stderr}");
    verdicts[0]
}

#[test]
fn ctrl_c_detaches_and_leaves_the_process_running() {
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let monitor = memtrace()
        .args(["swap", "--interval", "50", "--pid"])
        .arg(target.id().to_string())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, stderr) = interrupt_when_watching(monitor);
    assert_eq!(code, Some(0));
    assert!(
        verdict_line(&stderr).starts_with("verdict: ok ("),
        "{stderr}"
    );
    // Still running: the monitor only watched it.
    assert_eq!(target.try_wait().unwrap(), None);
    target.kill().unwrap();
    target.wait().unwrap();
}

#[test]
fn a_pid_that_does_not_exist_is_one_error_line() {
    // Pids are below pid_max, so pid_max itself is never a process.
    let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap();
    let pid_max = pid_max.trim();
    let out = memtrace()
        .args(["swap", "--pid", pid_max])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        format!("memtrace: no process with pid {pid_max}\n")
    );
}

#[test]
fn a_pid_that_may_not_be_read_is_one_error_line() {
    const TEST: &str = "a_pid_that_may_not_be_read_is_one_error_line";
    if !common::is_root() {
        common::skip(
            TEST,
            "needs root to mount a private /proc with hidepid and drop privileges",
        );
        return;
    }
    // A private /proc mounted with hidepid=1 (others' processes visible but
    // unreadable), and memtrace run as nobody against this test process.
    let me = std::process::id();
    let script = format!(
        "mount -t proc -o hidepid=1 proc /proc && exec setpriv --reuid=65534 --regid=65534 --clear-groups {} swap --pid {me}",
        env!("CARGO_BIN_EXE_memtrace")
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    if stderr.contains("unshare:") || stderr.contains("mount:") || stderr.contains("setpriv:") {
        common::skip(
            TEST,
            &format!("cannot set up a private /proc here: {stderr}"),
        );
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!("memtrace: may not read process {me}: permission denied on /proc/{me} (run as its user or as root)\n")
    );
}

#[test]
fn a_timeline_file_must_be_csv_or_json() {
    let out = memtrace()
        .args(["swap", "-o", "timeline.txt", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "memtrace: timeline.txt: the timeline file must end in .csv or .json\n"
    );
}

#[test]
fn exits_with_the_programs_status() {
    let out = memtrace()
        .args(["swap", "-q", "--", "sh", "-c", "exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let out = memtrace()
        .args(["swap", "-q", "--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(128 + 15));
}

#[test]
fn writes_a_csv_timeline_and_an_svg_chart() {
    let dir = scratch("swap-files");
    let (csv, svg) = (dir.join("t.csv"), dir.join("t.svg"));
    let out = memtrace()
        .args(["swap", "-q", "--interval", "50", "-o"])
        .arg(&csv)
        .arg("--svg")
        .arg(&svg)
        .args(["--", "sleep", "0.5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let n_samples: usize = stderr
        .strip_prefix("verdict: ok (")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the summary names the samples");
    // A header, then one row per sample; the first row has no state.
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert_eq!(rows.len(), n_samples + 1);
    assert!(rows[0].starts_with("t_ms,n_procs,"));
    assert!(rows[0].ends_with(",state"));
    assert!(rows[1].ends_with(','));
    assert!(rows[2..].iter().all(|r| r.ends_with(",ok")));
    // The chart is SVG whose text (no font library needed) names the
    // program, the state it was in, the memory panel and its lines; a
    // sleeping program takes no major fault and stalls on nothing, which
    // the subtitle says instead of two flat panels.
    let svg = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "text")
        .filter_map(|n| n.text())
        .map(str::trim)
        .collect();
    for label in ["Swap and thrash monitor: sleep", "ok", "RSS", "swap"] {
        assert!(texts.contains(&label), "no text {label:?} in {texts:?}");
    }
    assert!(
        texts.iter().any(|t| t.starts_with("memory (")),
        "no memory panel in {texts:?}"
    );
    let subtitle: String = texts
        .iter()
        .skip_while(|t| !t.starts_with("verdict ok; peak RSS "))
        .take(2)
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let pressure = if std::path::Path::new("/proc/pressure/memory").exists() {
        "no memory pressure stall"
    } else {
        "memory pressure not measured (no PSI)"
    };
    // `majflt` is cumulative: its last row is the run's total (a cold
    // start may read `sleep` from disk).
    let header: Vec<&str> = rows[0].split(',').collect();
    let col = header.iter().position(|c| *c == "majflt").expect("majflt");
    let majflt: u64 = rows[rows.len() - 1]
        .split(',')
        .nth(col)
        .unwrap()
        .parse()
        .unwrap();
    let faults = if majflt == 0 {
        "; no major fault"
    } else {
        assert!(texts.contains(&"major faults per second"), "{texts:?}");
        ""
    };
    assert!(
        subtitle.contains(&format!("{faults}; {pressure}")),
        "{subtitle:?} in {texts:?}"
    );
    for absent in ["reclaiming", "thrashing"] {
        assert!(!texts.contains(&absent), "{absent:?} in {texts:?}");
    }
}

#[test]
fn an_interrupt_sent_to_memtrace_reaches_the_program() {
    let mut monitor = memtrace();
    monitor
        .args(["swap", "--interval", "50", "--", "sleep", "30"])
        .stderr(Stdio::piped());
    // A test run started in the background by a non-interactive shell
    // ignores SIGINT, and `sleep` would inherit that: give the monitor (and
    // so the program) the default disposition, as in a terminal.
    // SAFETY: only async-signal-safe calls (signal) between fork and exec.
    unsafe {
        monitor.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let monitor = monitor.spawn().unwrap();
    let (code, stderr) = interrupt_when_watching(monitor);
    // sleep died of SIGINT (2), and memtrace reports it like a shell does.
    assert_eq!(code, Some(128 + 2));
    assert!(
        verdict_line(&stderr).starts_with("verdict: ok ("),
        "{stderr}"
    );
}
