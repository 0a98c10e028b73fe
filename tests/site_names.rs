//! Sites of real programs without debug information are named and kept
//! apart as heaptrack names them: Debian's `jq`, `sqlite3` and `git` (whose
//! modules have only `.dynsym`), their top 5 functions by calls.
//!
//! memtrace's site is a stack's first frame outside the allocator wrappers
//! and the C/C++ runtimes; heaptrack's is malloc's direct caller. So the
//! reference is heaptrack's backtraces (`heaptrack_print
//! --merge-backtraces=0`), each given the site memtrace's rule picks,
//! grouped by function as memtrace's `functions` are. A frame no symbol
//! names is `0xADDRESS` in heaptrack (the return address - 1, absolute)
//! and `module+0xOFFSET` in memtrace (the return address relative to the
//! load bias): they match in their module when their page offsets do.
//!
//! The names are checked always: for the builds they were read from
//! (by build id), exactly; for other builds, those that come from exported
//! symbols and so do not move (`jv_mem_alloc`, `inflateInit2_`). Their
//! flame graphs keep the library frames (`sqlite3_step`, `sqlite3VdbeExec`)
//! and have no `??` frame.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{memtrace, report_json, scratch, skip};
use serde_json::Value;

/// One program's case.
struct Case {
    /// Its name, for messages and the scratch dir.
    name: &'static str,
    /// The command line.
    program: Vec<String>,
    /// What it reads on stdin.
    stdin: &'static str,
    /// The builds the exact names were read from: (module path, build id).
    builds: &'static [(&'static str, &'static str)],
    /// memtrace's top 5 function names for those builds, most calls first.
    top5: [&'static str; 5],
    /// Names among the top 5 whatever the build.
    stable: &'static [&'static str],
    /// Frames (exported functions) its flame graph by calls must keep.
    flame_frames: &'static [&'static str],
}

const JQ_FILTER: &str = "[range(20000)] | map({k: ., v: (. * 2)}) | length";

const SQLITE_SCRIPT: &str = "\
create table t(a integer primary key, b text, c real);
with recursive n(i) as (select 1 union all select i+1 from n where i < 20000)
insert into t select i, printf('row %d', i), i * 0.5 from n;
create index tb on t(b);
select count(*), sum(a), max(b) from t;
select b from t where a % 5000 = 0 order by a;
";

fn cases(git_repo: &Path) -> Vec<Case> {
    vec![
        Case {
            name: "jq",
            program: vec!["jq".into(), "-n".into(), JQ_FILTER.into()],
            stdin: "",
            builds: &[(
                "/lib/x86_64-linux-gnu/libjq.so.1",
                "77cd7be94f22bb8b51a6f9a43e7517019d1f0b1a",
            )],
            top5: [
                "jv_mem_alloc",
                "libjq.so.1+0x12a18",
                "libjq.so.1+0x15b2a",
                "jv_mem_realloc",
                "libjq.so.1+0x1397e",
            ],
            stable: &["jv_mem_alloc", "jv_mem_realloc"],
            flame_frames: &["jq_next", "jv_mem_alloc"],
        },
        Case {
            name: "sqlite3",
            program: vec!["sqlite3".into(), ":memory:".into()],
            stdin: SQLITE_SCRIPT,
            builds: &[
                (
                    "/lib/x86_64-linux-gnu/libsqlite3.so.0",
                    "5221b80bd99650e3e55370b0e24f4b4dbe81264f",
                ),
                (
                    "/usr/bin/sqlite3",
                    "a2967b32b2930dba2fe396961439ffa262bc25ee",
                ),
            ],
            top5: [
                "libsqlite3.so.0+0xa7504",
                "libsqlite3.so.0+0xa74b9",
                "sqlite3+0x16a62",
                "sqlite3+0x1ec26",
                "sqlite3+0x35285",
            ],
            stable: &[],
            flame_frames: &[
                "sqlite3_step",
                "sqlite3VdbeExec",
                "sqlite3BtreeInsert",
                "sqlite3Malloc",
            ],
        },
        Case {
            name: "git",
            // /usr/bin/git: /usr/local/bin/git may be another, stripped one.
            program: vec![
                "/usr/bin/git".into(),
                "-C".into(),
                git_repo.display().to_string(),
                "log".into(),
                "--stat".into(),
            ],
            stdin: "",
            builds: &[("/usr/bin/git", "a91136fac508c2f5e175d2f171ba40c017b37072")],
            top5: [
                "git+0x289719",
                "git+0x2898c6",
                "git+0x28997b",
                "git+0x28961c",
                "inflateInit2_",
            ],
            stable: &["inflateInit2_"],
            flame_frames: &["inflateInit2_"],
        },
    ]
}

/// The hex GNU build id of an ELF file.
fn build_id(path: &str) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    let elf = goblin::elf::Elf::parse(&bytes).ok()?;
    let mut notes = elf.iter_note_headers(&bytes)?;
    let note = notes.find_map(|n| {
        n.ok()
            .filter(|n| n.n_type == goblin::elf::note::NT_GNU_BUILD_ID)
    })?;
    Some(note.desc.iter().map(|b| format!("{b:02x}")).collect())
}

/// A repository with a history that does not change: 300 commits, each
/// changing one of 10 files, made by `git fast-import` with fixed names
/// and dates.
fn make_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    let git = |args: &[&str], stdin: &[u8]| {
        use std::io::Write;
        let mut child = Command::new("/usr/bin/git")
            .args(args)
            .current_dir(dir)
            .env("HOME", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run git");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        assert!(child.wait().unwrap().success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main", repo.to_str().unwrap()], b"");
    let mut stream = String::new();
    for i in 1..=300u32 {
        let message = format!("change {i}\n");
        let content: String = (0..i % 37 + 1)
            .map(|k| format!("line {k} of {i}\n"))
            .collect();
        stream += &format!(
            "commit refs/heads/main\nmark :{i}\n\
             committer Test <test@example.com> {} +0000\n\
             data {}\n{message}",
            1_700_000_000 + i * 60,
            message.len()
        );
        if i > 1 {
            stream += &format!("from :{}\n", i - 1);
        }
        stream += &format!(
            "M 644 inline file{}.txt\ndata {}\n{content}\n",
            i % 10,
            content.len()
        );
    }
    git(
        &["-C", repo.to_str().unwrap(), "fast-import", "--quiet"],
        stream.as_bytes(),
    );
    repo
}

/// Runs `cmd` in `dir` with `stdin`, `HOME` set to `dir`; checks it succeeded.
fn run_in(dir: &Path, cmd: &mut Command, stdin: &str, what: &str) {
    use std::io::Write;
    let mut child = cmd
        .current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// memtrace's top functions by calls: (name, module, calls).
fn memtrace_top(dir: &Path, case: &Case) -> Vec<(String, String, u64)> {
    run_in(
        dir,
        memtrace()
            .args(["run", "-q", "-o", "t.trace", "--"])
            .args(&case.program),
        case.stdin,
        case.name,
    );
    let report = report_json(&dir.join("t.trace"));
    report["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f: &Value| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["module"].as_str().unwrap_or("").to_string(),
                f["allocations"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// The C/C++ runtimes, by file name, as memtrace's site rule has them.
fn is_runtime(module: &str) -> bool {
    let name = module.rsplit('/').next().unwrap_or(module);
    [
        "libc.so",
        "ld-linux",
        "libstdc++.so",
        "libgcc_s.so",
        "libpthread.so",
        "libdl.so",
        "librt.so",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

const ALLOCATOR_FUNCTIONS: &[&str] = &["malloc", "calloc", "realloc", "free", "strdup", "strndup"];

/// heaptrack's backtraces of `case`, each at the site memtrace's rule
/// picks, summed by (function or `0xADDRESS`, module).
fn heaptrack_by_site(dir: &Path, case: &Case) -> HashMap<(String, String), u64> {
    run_in(
        dir,
        Command::new("heaptrack")
            .arg("-o")
            .arg(dir.join("ht"))
            .args(&case.program),
        case.stdin,
        "heaptrack",
    );
    let data = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("ht."))
        })
        .expect("heaptrack's data file");
    let out = Command::new("heaptrack_print")
        .arg("-f")
        .arg(&data)
        .args(["-m", "0", "-a", "1", "-p", "0", "-T", "0", "-s", "0"])
        .args(["-n", "1000000000"])
        .output()
        .expect("run heaptrack_print");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let text = text
        .split_once("MOST CALLS TO ALLOCATION FUNCTIONS")
        .expect("heaptrack_print's allocators section")
        .1;
    let mut sites: HashMap<(String, String), u64> = HashMap::new();
    for entry in text.split("\n\n") {
        let mut lines = entry.lines().filter(|l| !l.trim().is_empty());
        let Some(calls) = lines
            .next()
            .and_then(|l| l.trim().strip_suffix(" peak consumption from").map(|_| l))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        else {
            continue;
        };
        // Frames: a name at 2 spaces, then `at ...` and `in MODULE` at 4.
        let mut frames: Vec<(String, String)> = Vec::new();
        let mut name = String::new();
        for line in lines {
            if let Some(module) = line.strip_prefix("    in ") {
                frames.push((name.clone(), module.to_string()));
            } else if !line.starts_with("    ") {
                name = line.trim().to_string();
            }
        }
        let site = frames
            .iter()
            .find(|(f, m)| !is_runtime(m) && !ALLOCATOR_FUNCTIONS.contains(&f.as_str()))
            .or(frames.first())
            .cloned()
            .expect("a backtrace");
        *sites.entry(site).or_default() += calls;
    }
    sites
}

/// The heaptrack site that is memtrace's function `name` in `module`.
fn heaptrack_match<'a>(
    heaptrack: &'a HashMap<(String, String), u64>,
    name: &str,
    module: &str,
) -> Vec<(&'a (String, String), u64)> {
    let base = module.rsplit('/').next().unwrap_or(module);
    let offset = name
        .strip_prefix(base)
        .and_then(|r| r.strip_prefix("+0x"))
        .and_then(|hex| u64::from_str_radix(hex, 16).ok());
    heaptrack
        .iter()
        .filter(|((f, m), _)| {
            m == module
                && match offset {
                    Some(offset) => f
                        .strip_prefix("0x")
                        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
                        .is_some_and(|a| (a + 1) & 0xfff == offset & 0xfff),
                    None => f == name,
                }
        })
        .map(|(k, &v)| (k, v))
        .collect()
}

/// Whether `a` and `b` are within 0.1 % of each other.
fn within_a_thousandth(a: u64, b: u64) -> bool {
    a.abs_diff(b) * 1000 <= a.max(b)
}

/// Whether `program` is a path that exists or a name on `PATH`.
fn installed(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

fn check(case: &Case, dir: &Path) {
    if !installed(&case.program[0]) {
        skip(case.name, &format!("{} is not installed", case.program[0]));
        return;
    }
    let top = memtrace_top(dir, case);
    assert!(top.len() >= 5, "{}: {top:?}", case.name);
    let top5 = &top[..5];
    let names: Vec<&str> = top5.iter().map(|(n, _, _)| n.as_str()).collect();
    eprintln!("{}: memtrace's top 5: {top5:?}", case.name);
    let known_build = case
        .builds
        .iter()
        .all(|(path, id)| build_id(path).as_deref() == Some(*id));
    if known_build {
        assert_eq!(names, case.top5, "{}", case.name);
    } else {
        eprintln!(
            "{}: not the build the exact names were read from; checking the stable ones",
            case.name
        );
    }
    for stable in case.stable {
        assert!(
            names.contains(stable),
            "{}: {stable} in {names:?}",
            case.name
        );
    }
    // Every frame has a name: a function, or its module and offset.
    for (name, module, _) in top5 {
        let base = module.rsplit('/').next().unwrap();
        assert!(
            !name.starts_with("??") && !name.starts_with("0x"),
            "{}: {name}",
            case.name
        );
        if let Some(rest) = name.strip_prefix(base) {
            assert!(rest.starts_with("+0x"), "{name}");
        }
    }

    check_flame_graph(case, dir);

    if !installed("heaptrack") || !installed("heaptrack_print") {
        skip(
            &format!("{}_against_heaptrack", case.name),
            "heaptrack is not installed",
        );
        return;
    }
    let heaptrack = heaptrack_by_site(dir, case);
    let mut theirs: Vec<u64> = heaptrack.values().copied().collect();
    theirs.sort_unstable_by(|a, b| b.cmp(a));
    for (i, (name, module, calls)) in top5.iter().enumerate() {
        let found = heaptrack_match(&heaptrack, name, module);
        eprintln!(
            "{}: {name}: memtrace {calls}, heaptrack {found:?}",
            case.name
        );
        assert!(
            found
                .iter()
                .any(|&(_, theirs)| within_a_thousandth(*calls, theirs)),
            "{}: {name} in {module}, {calls} calls; heaptrack: {found:?}",
            case.name
        );
        assert!(
            within_a_thousandth(*calls, theirs[i]),
            "{}: memtrace's #{} has {calls} calls, heaptrack's {}",
            case.name,
            i + 1,
            theirs[i]
        );
    }
}

/// The flame graph by calls keeps the library frames, names them, and
/// names an unnamed frame by its module and offset: no `??`.
fn check_flame_graph(case: &Case, dir: &Path) {
    let folded = common::memtrace_stdout(
        dir,
        &["flamegraph", "--by", "calls", "--collapsed", "t.trace"],
    );
    let frames: std::collections::BTreeSet<&str> = folded
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .flat_map(|(stack, _)| stack.split(';'))
        .collect();
    assert!(!frames.contains("??"), "{}: {folded}", case.name);
    for want in case.flame_frames {
        assert!(
            frames.contains(want),
            "{}: no {want} in {frames:?}",
            case.name
        );
    }
}

#[test]
fn jq_sites_are_named_as_heaptrack_names_them() {
    let dir = scratch("names-jq");
    check(&cases(&dir)[0], &dir);
}

#[test]
fn sqlite3_sites_are_named_as_heaptrack_names_them() {
    let dir = scratch("names-sqlite3");
    check(&cases(&dir)[1], &dir);
}

#[test]
fn git_log_sites_are_named_as_heaptrack_names_them() {
    let dir = scratch("names-git");
    if !installed("/usr/bin/git") {
        skip("git_log", "/usr/bin/git is not installed");
        return;
    }
    let repo = make_repo(&dir);
    check(&cases(&repo)[2], &dir);
}
