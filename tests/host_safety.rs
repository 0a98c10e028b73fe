//! Files others can plant where memtrace, often root in CI, executes,
//! reads or writes (issue #18, items 1-3; docs/security.md):
//!
//! * the preload cache: a directory of mode 777, or of another user, is not
//!   used; a library of the right name and size but other bytes is never
//!   loaded (a planted library whose constructor creates a file proves it);
//!   an empty or relative `XDG_CACHE_HOME` writes nothing in the current
//!   directory;
//! * trace discovery: a FIFO and a link named like the next trace neither
//!   hang `run` nor are reported as the trace; `report --family` skips them;
//!   a FIFO given to an analysis command is one error line;
//! * outputs: links planted in a `plot` directory, at `flamegraph -o`,
//!   `--leaks-output` and `swap -o` are refused and their targets unchanged.
//!
//! Each test asserts exact lines. Tests that need another user's files
//! `chown` to uid 65534 (`nobody`) as root and say that they skip otherwise.

mod common;
use common::*;

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// Far above any normal run: only a hang reaches it.
const LIMIT: Duration = Duration::from_secs(60);
const NOBODY: u32 = 65534;

fn uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A fresh scratch directory, as its real path (messages name real paths).
fn fresh(name: &str) -> PathBuf {
    fs::canonicalize(scratch(name)).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The preload library memtrace writes to its cache: its file name and bytes.
fn real_library() -> &'static (String, Vec<u8>) {
    static LIB: OnceLock<(String, Vec<u8>)> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = fresh("real-library");
        let out = output_within(
            memtrace()
                .current_dir(&dir)
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .env_remove("MEMTRACE_PRELOAD")
                .args(["run", "-q", "--", "true"]),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let cache = dir.join("cache/memtrace");
        let names: Vec<String> = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // The run's trace list is gone: only the library is left.
        assert_eq!(names.len(), 1, "{names:?}");
        let bytes = fs::read(cache.join(&names[0])).unwrap();
        (names[0].clone(), bytes)
    })
}

/// A shared library whose constructor creates the file `$PLANTED_MARKER`,
/// padded with zeros to the real library's size (the loader ignores bytes
/// past what its headers map). Checked to work: preloaded on its own, it
/// creates the marker.
fn planted_library(dir: &Path) -> PathBuf {
    let source = dir.join("planted.c");
    fs::write(
        &source,
        "#include <fcntl.h>\n#include <stdlib.h>\n#include <unistd.h>\n\
         __attribute__((constructor)) static void planted(void) {\n\
           const char *p = getenv(\"PLANTED_MARKER\");\n\
           if (p) close(open(p, O_CREAT | O_WRONLY, 0644));\n\
         }\n",
    )
    .unwrap();
    let so = dir.join("planted.so");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&so)
        .arg(&source)
        .status()
        .expect("run cc");
    assert!(status.success());
    let size = real_library().1.len() as u64;
    assert!(fs::metadata(&so).unwrap().len() < size);
    fs::OpenOptions::new()
        .write(true)
        .open(&so)
        .unwrap()
        .set_len(size)
        .unwrap();
    let marker = dir.join("proof");
    let status = Command::new("true")
        .env("LD_PRELOAD", &so)
        .env("PLANTED_MARKER", &marker)
        .status()
        .unwrap();
    assert!(
        status.success() && marker.exists(),
        "the planted library must work"
    );
    fs::remove_file(&marker).unwrap();
    so
}

/// `memtrace run -q -o t.trace -- true` in `dir` with `XDG_CACHE_HOME=cache`
/// and the planted library's marker at `dir/marker`.
fn run_with_cache(dir: &Path, cache: &Path) -> Output {
    output_within(
        memtrace()
            .current_dir(dir)
            .env("XDG_CACHE_HOME", cache)
            .env("PLANTED_MARKER", dir.join("marker"))
            .env_remove("MEMTRACE_PRELOAD")
            .args(["run", "-q", "-o", "t.trace", "--", "true"]),
        LIMIT,
    )
}

/// The run was traced by the real library, and the planted one never ran.
fn traced_by_the_real_library(dir: &Path, out: &Output) {
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!dir.join("marker").exists(), "the planted library ran");
    let report = report_json(&dir.join("t.trace"));
    assert_eq!(report["program"]["cmdline"], serde_json::json!(["true"]));
}

/// A cache directory that others can change is not used, whatever it
/// holds: `fallback` says which one is used instead.
fn planted_cache_is_not_used(test: &str, prepare: impl Fn(&Path), why: &str) {
    let dir = fresh(test);
    let planted = planted_library(&dir);
    let cache = dir.join("cache");
    let memtrace_dir = cache.join("memtrace");
    fs::create_dir_all(&memtrace_dir).unwrap();
    let name = &real_library().0;
    fs::copy(&planted, memtrace_dir.join(name)).unwrap();
    prepare(&memtrace_dir);
    let out = run_with_cache(&dir, &cache);
    let uid = uid();
    assert_eq!(
        stderr(&out),
        format!(
            "memtrace: not using {d}: {d} {why}; using /tmp/memtrace-{uid} instead\n",
            d = memtrace_dir.display()
        )
    );
    traced_by_the_real_library(&dir, &out);
    // Nothing was changed there either.
    assert_eq!(
        fs::read(memtrace_dir.join(name)).unwrap(),
        fs::read(&planted).unwrap()
    );
}

#[test]
fn a_cache_directory_writable_by_others_is_not_used() {
    planted_cache_is_not_used(
        "cache-777",
        |d| set_mode(d, 0o777),
        "is writable by others (mode 777)",
    );
}

#[test]
fn a_cache_directory_of_another_user_is_not_used() {
    let test = "a_cache_directory_of_another_user_is_not_used";
    if !is_root() {
        return skip(test, "chown to another user needs root");
    }
    planted_cache_is_not_used(
        "cache-nobody",
        |d| {
            set_mode(d, 0o700);
            chown(d, NOBODY);
        },
        "belongs to uid 65534, not to this user (uid 0)",
    );
}

#[test]
fn a_planted_library_with_the_right_name_and_size_is_replaced_not_loaded() {
    let dir = fresh("cache-planted");
    let planted = planted_library(&dir);
    let cache = dir.join("cache");
    let memtrace_dir = cache.join("memtrace");
    fs::create_dir_all(&memtrace_dir).unwrap();
    set_mode(&memtrace_dir, 0o700);
    let (name, real) = real_library();
    let library = memtrace_dir.join(name);

    // Same name, same size, other bytes.
    fs::copy(&planted, &library).unwrap();
    let out = run_with_cache(&dir, &cache);
    assert_eq!(
        stderr(&out),
        format!(
            "memtrace: replacing {}: different content, not memtrace's preload library\n",
            library.display()
        )
    );
    traced_by_the_real_library(&dir, &out);
    assert!(fs::read(&library).unwrap() == *real);

    // A link at the library's name, to the planted library.
    fs::remove_file(&library).unwrap();
    fs::remove_file(dir.join("t.trace")).unwrap();
    symlink(&planted, &library).unwrap();
    let out = run_with_cache(&dir, &cache);
    assert_eq!(
        stderr(&out),
        format!(
            "memtrace: replacing {}: a symbolic link, not memtrace's preload library\n",
            library.display()
        )
    );
    traced_by_the_real_library(&dir, &out);
    assert!(fs::symlink_metadata(&library).unwrap().is_file());
    assert!(fs::read(&library).unwrap() == *real);
    // Only the library is left in the cache.
    assert_eq!(fs::read_dir(&memtrace_dir).unwrap().count(), 1);
}

#[test]
fn an_empty_or_relative_xdg_cache_home_writes_nothing_in_the_current_directory() {
    for xdg in ["", "relative/cache"] {
        let dir = fresh("xdg-relative");
        let home = dir.join("home");
        let work = dir.join("work");
        fs::create_dir_all(&work).unwrap();
        let out = output_within(
            memtrace()
                .current_dir(&work)
                .env("XDG_CACHE_HOME", xdg)
                .env("HOME", &home)
                .env_remove("MEMTRACE_PRELOAD")
                .args(["run", "-q", "-o", "t.trace", "--", "true"]),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(0), "{xdg:?}: {out:?}");
        assert_eq!(stderr(&out), "", "{xdg:?}");
        let in_work: Vec<String> = fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(in_work, ["t.trace"], "{xdg:?}");
        // The XDG default instead: $HOME/.cache/memtrace.
        let cached: Vec<String> = fs::read_dir(home.join(".cache/memtrace"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(cached, [real_library().0.clone()], "{xdg:?}");
    }
}

#[test]
fn with_no_private_cache_a_fresh_directory_is_used_and_removed() {
    let test = "with_no_private_cache_a_fresh_directory_is_used_and_removed";
    if !is_root() {
        return skip(test, "running as another user needs root");
    }
    // /tmp/memtrace-65534 of root: not nobody's. Only made here if absent,
    // and removed after.
    let planted = PathBuf::from(format!("/tmp/memtrace-{NOBODY}"));
    if fs::symlink_metadata(&planted).is_ok() {
        return skip(test, &format!("{} exists already", planted.display()));
    }
    fs::create_dir(&planted).unwrap();
    let dir = fresh("cache-fresh");
    chown(&dir, NOBODY);
    // A cache directory nobody cannot create: passed over in silence.
    let cache = dir.join("root-cache");
    fs::create_dir(&cache).unwrap();
    let out = output_within(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_memtrace"))
            .current_dir(&dir)
            .env("XDG_CACHE_HOME", &cache)
            .env_remove("MEMTRACE_PRELOAD")
            .args(["run", "-q", "-o", "t.trace", "--", "true"]),
        LIMIT,
    );
    let _ = fs::remove_dir(&planted);
    let stderr = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let prefix = format!(
        "memtrace: not using {p}: {p} belongs to uid 0, not to this user (uid 65534); \
         using /tmp/memtrace-65534.",
        p = planted.display()
    );
    let fresh_dir = stderr
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(" instead\n"))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(fresh_dir.len(), 6, "{stderr}");
    assert!(
        fresh_dir.bytes().all(|b| b.is_ascii_alphanumeric()),
        "{stderr}"
    );
    // Removed at the end of the run; the trace is there.
    assert!(!Path::new(&format!("/tmp/memtrace-65534.{fresh_dir}")).exists());
    let report = report_json(&dir.join("t.trace"));
    assert_eq!(report["program"]["cmdline"], serde_json::json!(["true"]));
}

/// The trace names `run` is given by the recorder: a FIFO and a link named
/// like the next image's trace, newer than anything else in the directory,
/// take the default name and the next; the real trace is the one after.
#[test]
fn a_fifo_and_a_link_named_like_the_next_trace_are_not_the_trace() {
    let dir = fresh("trace-fifo");
    fs::write(dir.join("victim"), "victim\n").unwrap();
    // The shell plants them under its own pid, which `exec` keeps; a date in
    // the future makes them the newest files of the directory, which is
    // what `run` used to report (and then read the FIFO, forever).
    let script = "echo $$; \
         mkfifo memtrace.ls.$$.trace; \
         ln -s victim memtrace.ls.$$.trace.1; \
         touch -d '+1 hour' memtrace.ls.$$.trace; \
         touch -h -d '+1 hour' memtrace.ls.$$.trace.1; \
         exec ls -d /";
    let out = output_within(
        memtrace()
            .current_dir(&dir)
            .args(["run", "--", "bash", "-c", script]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pid = stdout.lines().next().unwrap();
    assert_eq!(stdout, format!("{pid}\n/\n"));
    let stderr = stderr(&out);
    let trace = dir.join(format!("memtrace.ls.{pid}.trace.2"));
    assert_eq!(
        stderr.lines().last().unwrap(),
        format!("memtrace: trace written to {}", trace.display())
    );
    let report = report_json(&trace);
    assert_eq!(
        report["program"]["cmdline"],
        serde_json::json!(["ls", "-d", "/"])
    );
    assert_eq!(fs::read_to_string(dir.join("victim")).unwrap(), "victim\n");

    // `report --family` skips what is not a regular file, one line each.
    let sh_trace = dir.join(format!("memtrace.bash.{pid}.trace"));
    fs::create_dir(dir.join("planted.trace")).unwrap();
    let out = output_within(
        memtrace()
            .current_dir(&dir)
            .args(["report", "--family"])
            .arg(&sh_trace),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut lines: Vec<String> = stderr_lines(&out);
    lines.sort();
    let skip = |name: &str, what: &str| {
        format!(
            "memtrace: skipping {}: {what}, not a regular file: memtrace reads traces only \
             from regular files",
            dir.join(name).display()
        )
    };
    let mut expected = [
        skip(&format!("memtrace.ls.{pid}.trace"), "a FIFO"),
        skip(&format!("memtrace.ls.{pid}.trace.1"), "a symbolic link"),
        skip("planted.trace", "a directory"),
    ];
    expected.sort();
    assert_eq!(lines, expected);
    // The family: the shell, the programs it started (how many of their
    // forks left a trace of their own before `exec` varies), and the `ls`
    // it became, last.
    let sh = sh_trace.to_str().unwrap();
    let family = memtrace_json(&dir, &["report", "--family", "--format", "json", sh]);
    let traces: Vec<&str> = family["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["trace"].as_str().unwrap())
        .collect();
    assert_eq!(traces.first(), Some(&sh), "{traces:?}");
    assert_eq!(traces.last(), Some(&trace.to_str().unwrap()), "{traces:?}");
}

fn stderr_lines(out: &Output) -> Vec<String> {
    stderr(out).lines().map(str::to_string).collect()
}

#[test]
fn a_fifo_given_to_an_analysis_command_is_one_error_line() {
    let dir = fresh("fifo-trace");
    let status = Command::new("mkfifo")
        .arg(dir.join("t.trace"))
        .status()
        .unwrap();
    assert!(status.success());
    for command in [
        "report",
        "leaks",
        "latency",
        "frag",
        "flamegraph",
        "plot",
        "dump",
    ] {
        let out = output_within(
            memtrace().current_dir(&dir).args([command, "t.trace"]),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(2), "{command}: {out:?}");
        assert_eq!(
            stderr(&out),
            "memtrace: t.trace: a FIFO, not a regular file: memtrace reads traces only from \
             regular files\n",
            "{command}"
        );
    }
    // `--follow` and `--family` open it the same way.
    for args in [&["report", "--follow=1"][..], &["report", "--family"]] {
        let out = output_within(
            memtrace().current_dir(&dir).args(args).arg("t.trace"),
            LIMIT,
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert_eq!(stderr_lines(&out).len(), 1, "{args:?}: {out:?}");
    }
}

/// A recorded trace and a victim file in a fresh directory.
fn trace_and_victim(name: &str) -> PathBuf {
    let dir = fresh(name);
    record(&dir, "t.trace", &["ls", "-d", "/"]);
    fs::write(dir.join("victim"), "victim\n").unwrap();
    dir
}

/// `memtrace ARGS` in `dir` fails with exactly `line`, and the victim is
/// unchanged.
fn refused(dir: &Path, args: &[&str], line: &str) {
    let out = output_within(memtrace().current_dir(dir).args(args), LIMIT);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    assert_eq!(stderr(&out), format!("memtrace: {line}\n"), "{args:?}");
    assert_eq!(fs::read_to_string(dir.join("victim")).unwrap(), "victim\n");
}

const LINK: &str = "is a symbolic link: memtrace does not write through links";

#[test]
fn plot_refuses_links_in_its_directory_and_a_linked_directory() {
    let dir = trace_and_victim("plot-links");
    // A chart's name in an existing directory of ours, linked to the victim.
    fs::create_dir(dir.join("charts")).unwrap();
    symlink(dir.join("victim"), dir.join("charts/heap.svg")).unwrap();
    refused(
        &dir,
        &["plot", "t.trace", "-o", "charts"],
        &format!("charts/heap.svg {LINK}"),
    );
    // The default directory, and a named one, as links to a directory.
    fs::create_dir(dir.join("elsewhere")).unwrap();
    symlink(dir.join("elsewhere"), dir.join("t.charts")).unwrap();
    refused(&dir, &["plot", "t.trace"], &format!("t.charts {LINK}"));
    symlink(dir.join("elsewhere"), dir.join("out")).unwrap();
    refused(
        &dir,
        &["plot", "t.trace", "-o", "out"],
        &format!("out {LINK}"),
    );
    assert_eq!(fs::read_dir(dir.join("elsewhere")).unwrap().count(), 0);

    // An existing directory of ours: its charts are replaced, nothing else
    // is left there.
    fs::remove_file(dir.join("charts/heap.svg")).unwrap();
    fs::write(dir.join("charts/heap.svg"), "old").unwrap();
    let out = output_within(
        memtrace()
            .current_dir(&dir)
            .args(["plot", "t.trace", "-o", "charts", "--only", "heap"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "charts/heap.svg\ncharts/index.html\n"
    );
    let mut names: Vec<String> = fs::read_dir(dir.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["heap.svg", "index.html"]);
    assert!(fs::read_to_string(dir.join("charts/heap.svg"))
        .unwrap()
        .starts_with("<svg"));
}

#[test]
fn plot_refuses_a_directory_of_another_user() {
    let test = "plot_refuses_a_directory_of_another_user";
    if !is_root() {
        return skip(test, "chown to another user needs root");
    }
    let dir = trace_and_victim("plot-nobody");
    fs::create_dir(dir.join("theirs")).unwrap();
    chown(&dir.join("theirs"), NOBODY);
    refused(
        &dir,
        &["plot", "t.trace", "-o", "theirs"],
        "theirs belongs to another user (uid 65534): memtrace writes only into directories \
         of its own user",
    );
    assert_eq!(fs::read_dir(dir.join("theirs")).unwrap().count(), 0);
}

#[test]
fn flamegraph_leaks_output_and_swap_refuse_a_link_as_their_output() {
    let dir = trace_and_victim("output-links");
    symlink(dir.join("victim"), dir.join("out.svg")).unwrap();
    refused(
        &dir,
        &["flamegraph", "t.trace", "-o", "out.svg"],
        &format!("out.svg {LINK}"),
    );
    symlink(dir.join("victim"), dir.join("leaks.txt")).unwrap();
    // Refused before the program runs: it prints nothing.
    let args = [
        "run",
        "--check-leaks",
        "--leaks-output",
        "leaks.txt",
        "--",
        "sh",
        "-c",
        "echo ran",
    ];
    refused(&dir, &args, &format!("leaks.txt {LINK}"));
    symlink(dir.join("victim"), dir.join("swap.csv")).unwrap();
    refused(
        &dir,
        &["swap", "-o", "swap.csv", "--", "sh", "-c", "echo ran"],
        &format!("swap.csv {LINK}"),
    );
    // No program ran, and nothing else was made.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["leaks.txt", "out.svg", "swap.csv", "t.trace", "victim"]
    );

    // A regular file is replaced, through a temporary file that is gone.
    fs::remove_file(dir.join("out.svg")).unwrap();
    fs::write(dir.join("out.svg"), "old").unwrap();
    let out = output_within(
        memtrace().current_dir(&dir).args([
            "flamegraph",
            "t.trace",
            "--collapsed",
            "-o",
            "out.svg",
        ]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let folded = output_within(
        memtrace().current_dir(&dir).args(["flamegraph", "t.trace"]),
        LIMIT,
    );
    assert_eq!(fs::read(dir.join("out.svg")).unwrap(), folded.stdout);
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 5);
}
