//! Programs nobody here wrote, run natively and under `memtrace run`: the
//! same stdout and exit status, no hang (a hard time limit), and every trace
//! they leave (one per process, exec'd and forked ones included) complete,
//! with heap calls in it.
//!
//! The programs are Debian's, installed by `.ci/run`: a Rust binary built by
//! `rustc` here, `cargo build` of a generated crate (cargo and rustc exec
//! each other), `java` (`default-jre-headless`), `node` (`nodejs`), `perl`,
//! Debian's `python3`, `bash` pipelines, `make -j2` of a generated C
//! project, `git log` and `gcc -c`. A missing one skips with its reason (a
//! failure under `MEMTRACE_TEST_STRICT=1`); the test prints which ran.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{memtrace, output_within, root, scratch, skip};
use serde_json::Value;

/// Far above any of these programs' time under memtrace: only a hang reaches it.
const LIMIT: Duration = Duration::from_secs(300);

/// One program to run both ways.
struct Wild {
    /// A short name, used for directories and messages.
    name: &'static str,
    /// The command line.
    argv: Vec<String>,
    /// Makes a fresh working directory's contents (each run gets its own, so
    /// that a build does real work both times).
    setup: fn(&Path),
    /// A file the program writes whose bytes must be the same both ways.
    product: Option<&'static str>,
}

/// The absolute path of `program` in PATH, if installed.
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn nothing(_: &Path) {}

fn hello_rs(dir: &Path) {
    std::fs::write(
        dir.join("hello.rs"),
        "use std::collections::HashMap;\n\
         fn main() {\n\
             let words: Vec<String> = (0..2000).map(|i| format!(\"w{}\", i % 97)).collect();\n\
             let mut counts: HashMap<&str, usize> = HashMap::new();\n\
             for w in &words { *counts.entry(w).or_default() += 1; }\n\
             let mut keys: Vec<_> = counts.into_iter().collect();\n\
             keys.sort();\n\
             println!(\"{} distinct, first {:?}\", keys.len(), keys[0]);\n\
         }\n",
    )
    .unwrap();
}

fn tiny_crate(dir: &Path) {
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"tiny\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/main.rs"),
        "fn main() { let v: Vec<u64> = (1..=100).collect(); println!(\"{}\", v.iter().sum::<u64>()); }\n",
    )
    .unwrap();
}

fn java_source(dir: &Path) {
    std::fs::write(
        dir.join("Objects.java"),
        "import java.util.*;\n\
         public class Objects {\n\
             public static void main(String[] args) {\n\
                 Map<Integer, List<String>> m = new HashMap<>();\n\
                 for (int i = 0; i < 20000; i++) m.computeIfAbsent(i % 50, k -> new ArrayList<>()).add(\"v\" + i);\n\
                 long n = 0; for (List<String> l : m.values()) n += l.size();\n\
                 System.out.println(m.size() + \" keys, \" + n + \" values\");\n\
             }\n\
         }\n",
    )
    .unwrap();
}

fn c_project(dir: &Path) {
    for i in 0..4 {
        std::fs::write(
            dir.join(format!("part{i}.c")),
            format!("#include <stdlib.h>\nint part{i}(void) {{ int *p = malloc(64); p[0] = {i}; int v = p[0]; free(p); return v; }}\n"),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("main.c"),
        "#include <stdio.h>\nint part0(void); int part1(void); int part2(void); int part3(void);\n\
         int main(void) { printf(\"%d\\n\", part0() + part1() + part2() + part3()); return 0; }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("Makefile"),
        "OBJS = main.o part0.o part1.o part2.o part3.o\n\
         prog: $(OBJS)\n\tgcc -o prog $(OBJS)\n\t./prog\n\
         %.o: %.c\n\tgcc -O1 -c -o $@ $<\n",
    )
    .unwrap();
}

fn c_unit(dir: &Path) {
    std::fs::write(
        dir.join("unit.c"),
        "#include <string.h>\nstruct s { int a; char b[32]; };\n\
         int f(struct s *x, const char *t) { strncpy(x->b, t, 31); return x->a + (int)strlen(x->b); }\n",
    )
    .unwrap();
}

fn programs() -> Vec<(Wild, Option<String>)> {
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let needs = |program: &str| -> Option<String> {
        which(program)
            .is_none()
            .then(|| format!("{program} is not installed (.ci/run installs it)"))
    };
    let git_dir = root().display().to_string();
    vec![
        (
            Wild {
                name: "rust-binary",
                argv: s(&["sh", "-c", "rustc -O -o hello hello.rs && ./hello"]),
                setup: hello_rs,
                product: None,
            },
            needs("rustc"),
        ),
        (
            Wild {
                name: "cargo-build",
                argv: s(&[
                    "sh",
                    "-c",
                    "cargo build --offline --quiet --target-dir t && ./t/debug/tiny",
                ]),
                setup: tiny_crate,
                product: None,
            },
            needs("cargo"),
        ),
        (
            Wild {
                name: "java-version",
                argv: s(&["java", "-version"]),
                setup: nothing,
                product: None,
            },
            needs("java"),
        ),
        (
            Wild {
                name: "java-program",
                argv: s(&["java", "-Xshare:off", "Objects.java"]),
                setup: java_source,
                product: None,
            },
            needs("java"),
        ),
        (
            Wild {
                name: "node",
                argv: s(&[
                    "node",
                    "-e",
                    "const a = []; for (let i = 0; i < 50000; i++) a.push({k: i, v: 'x' + i}); \
                     console.log(a.filter(o => o.k % 7 === 0).length, JSON.stringify(a[123]));",
                ]),
                setup: nothing,
                product: None,
            },
            needs("node"),
        ),
        (
            Wild {
                name: "perl",
                argv: s(&[
                    "perl",
                    "-e",
                    "my %h; $h{$_ % 1000} .= $_ for 1..50000; my $n = 0; $n += length $h{$_} for keys %h; \
                     my @c = map { my $x = $_; sub { $x * 2 } } 1..100; print scalar(keys %h), \" $n \", $c[9]->(), \"\\n\";",
                ]),
                setup: nothing,
                product: None,
            },
            needs("perl"),
        ),
        (
            Wild {
                name: "python3-threads",
                argv: s(&[
                    "/usr/bin/python3",
                    "-c",
                    "import threading, json\n\
                     out = [None] * 4\n\
                     def work(i):\n    out[i] = len(json.dumps([{'k': j, 'v': str(j) * 3} for j in range(20000)]))\n\
                     ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n\
                     [t.start() for t in ts]; [t.join() for t in ts]\n\
                     print(out)",
                ]),
                setup: nothing,
                product: None,
            },
            (!Path::new("/usr/bin/python3").is_file())
                .then(|| "/usr/bin/python3 is not installed (.ci/run installs python3)".into()),
        ),
        (
            Wild {
                name: "bash-pipeline",
                argv: s(&[
                    "bash",
                    "-c",
                    // `seq` dies of SIGPIPE when `head` has gone (its
                    // trace must still be complete); GNU sort installs its
                    // own handler for SIGPIPE, which replaces memtrace's,
                    // so it reads its whole input here (`tail`).
                    "seq 1 20000 | sort -r | tail -3 | tr 1 x; \
                     seq 1 1000000 | head -1; echo ${PIPESTATUS[@]}",
                ]),
                setup: nothing,
                product: None,
            },
            needs("bash"),
        ),
        (
            Wild {
                name: "make-j2",
                argv: s(&["make", "-j2", "--no-print-directory"]),
                setup: c_project,
                product: Some("prog"),
            },
            needs("make").or_else(|| needs("gcc")),
        ),
        (
            Wild {
                name: "git-log",
                argv: s(&[
                    "git",
                    "-C",
                    &git_dir,
                    "log",
                    "--format=%H %s",
                    "-n",
                    "30",
                ]),
                setup: nothing,
                product: None,
            },
            needs("git"),
        ),
        (
            Wild {
                name: "gcc-c",
                argv: s(&["gcc", "-O2", "-c", "-o", "unit.o", "unit.c"]),
                setup: c_unit,
                product: Some("unit.o"),
            },
            needs("gcc"),
        ),
    ]
}

/// Runs `argv` in `dir` (natively or under memtrace), within the limit.
fn run_in(dir: &Path, argv: &[String], traced: bool) -> Output {
    let mut cmd = if traced {
        let mut c = memtrace();
        c.args(["run", "-q", "-o", "wild.trace", "--"]);
        c.args(argv);
        c
    } else {
        let mut c = Command::new(&argv[0]);
        c.args(&argv[1..]);
        c
    };
    cmd.current_dir(dir);
    output_within(&mut cmd, LIMIT)
}

/// Every trace in `dir`, each checked complete and with heap calls;
/// returns their number and their calls added up. A trace may hold no call
/// only for a reason it shows: the process exec'd before its first heap call
/// (a forked child that runs another program at once: another trace of the
/// same pid follows), or the program has its own malloc (rustc links
/// jemalloc statically), which the trace's note says.
fn check_traces(name: &str, dir: &Path) -> (usize, u64) {
    let mut traces: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".trace"))
        })
        .collect();
    traces.sort();
    assert!(!traces.is_empty(), "{name}: no trace in {}", dir.display());
    let reports: Vec<(PathBuf, Value)> = traces
        .into_iter()
        .map(|trace| {
            let out = memtrace()
                .args(["report", "--format", "json"])
                .arg(&trace)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{name}: report of {} failed: {}",
                trace.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            (trace, serde_json::from_slice(&out.stdout).unwrap())
        })
        .collect();
    let mut calls = 0;
    for (trace, r) in &reports {
        assert_eq!(
            r["trace"]["status"],
            "complete",
            "{name}: {} is not complete: {}",
            trace.display(),
            r["trace"]
        );
        let events = r["totals"]["events"].as_u64().unwrap();
        calls += events;
        if events > 0 {
            continue;
        }
        let pid = &r["program"]["pid"];
        let images_of_pid = reports
            .iter()
            .filter(|(_, o)| &o["program"]["pid"] == pid)
            .count();
        let own_malloc = r["trace"]["notes"].as_array().unwrap().iter().any(|n| {
            n.as_str()
                .unwrap()
                .contains("calls to them are not recorded")
        });
        assert!(
            images_of_pid > 1 || own_malloc,
            "{name}: {} holds no heap call, and neither an exec nor its own malloc explains it: {}",
            trace.display(),
            r["trace"]
        );
    }
    (reports.len(), calls)
}

#[test]
fn wild_programs_run_unchanged_and_leave_complete_traces() {
    let base = scratch("wild");
    let mut ran = Vec::new();
    for (wild, missing) in programs() {
        if let Some(why) = missing {
            skip(&format!("wild_programs: {}", wild.name), &why);
            continue;
        }
        let native_dir = base.join(format!("{}-native", wild.name));
        let traced_dir = base.join(format!("{}-traced", wild.name));
        for d in [&native_dir, &traced_dir] {
            std::fs::create_dir_all(d).unwrap();
            (wild.setup)(d);
        }
        let native = run_in(&native_dir, &wild.argv, false);
        let traced = run_in(&traced_dir, &wild.argv, true);
        assert_eq!(
            traced.status.code(),
            native.status.code(),
            "{}: exit status; traced stderr: {}",
            wild.name,
            String::from_utf8_lossy(&traced.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&traced.stdout),
            String::from_utf8_lossy(&native.stdout),
            "{}: stdout",
            wild.name
        );
        if let Some(product) = wild.product {
            let a = std::fs::read(native_dir.join(product)).unwrap();
            let b = std::fs::read(traced_dir.join(product)).unwrap();
            assert!(a == b, "{}: {product} differs", wild.name);
        }
        let (n_traces, calls) = check_traces(wild.name, &traced_dir);
        ran.push(format!(
            "{} (exit {:?}, {} traces, {} heap calls)",
            wild.name,
            native.status.code(),
            n_traces,
            calls
        ));
    }
    eprintln!("wild programs run: {}", ran.join("; "));
    assert!(!ran.is_empty(), "no program ran");
}
