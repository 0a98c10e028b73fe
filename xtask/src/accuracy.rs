//! `cargo xtask accuracy`: memtrace's figures beside heaptrack's and
//! valgrind memcheck's on real programs of the distribution.
//!
//! Five fixed, deterministic workloads (sqlite3, jq, python3, git, gcc, all
//! from `/usr/bin`) run once under `memtrace run --no-follow --check-leaks`,
//! once under heaptrack and once under `valgrind --leak-check=full`; a tool
//! that is not installed gets "not installed" in its column. The table
//! (allocation calls, peak heap, bytes unfreed at exit, the four leak
//! classes, the five functions with the most allocation calls) is printed and
//! written to `target/memtrace-report/accuracy.md`.
//!
//! Nothing is adjusted to make the tools agree: each counts what it counts,
//! and the notes under the table say what that is. Only the program's own
//! process is measured (neither heaptrack nor memcheck follows children
//! here; memtrace runs with `--no-follow`), so `gcc -c` is the driver alone.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::heaptrack::{self, MemtraceFigures};
use crate::util::{self, Paths, Table};
use crate::valgrind;

/// How many allocation sites each tool lists.
const TOP_SITES: usize = 5;

/// The figures of the table, one row each (then the top sites).
const METRICS: [&str; 7] = [
    "allocation calls",
    "peak heap (B)",
    "unfreed at exit (B)",
    "definitely lost",
    "indirectly lost",
    "possibly lost",
    "still reachable",
];

/// The SQL of the sqlite3 workload: 20,000 rows from a recursive CTE, an
/// index, a query.
const SQL: &str = "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, v REAL); \
    WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000) \
    INSERT INTO t SELECT x, 'name-' || x, x * 0.5 FROM c; \
    CREATE INDEX t_name ON t(name); \
    SELECT count(*), sum(v) FROM t WHERE name LIKE 'name-1%';";

/// The jq workload: 20,000 objects built, then summed.
const JQ: &str = r#"[range(20000) | {id: ., name: "n\(.)", v: (. * 2)}] | map(.v) | add"#;

/// The python3 workload: a dict of 100,000 entries, dumped as JSON.
const PYTHON: &str = r#"import json; d = {str(i): [i, "v%d" % i] for i in range(100000)}; print(len(json.dumps(d)))"#;

/// The C file of the gcc workload.
const C_SOURCE: &str = "#include <stdio.h>\n#include <stdlib.h>\n\n\
    struct node { struct node *next; int value; };\n\n\
    static int sum(const struct node *n) { int s = 0; for (; n; n = n->next) s += n->value; return s; }\n\n\
    int main(void) {\n    struct node *head = NULL;\n    for (int i = 0; i < 10; i++) {\n\
    \x20       struct node *n = malloc(sizeof *n);\n        if (!n) return 1;\n\
    \x20       n->value = i; n->next = head; head = n;\n    }\n\
    \x20   printf(\"%d\\n\", sum(head));\n    return 0;\n}\n";

/// Commits in the git workload's repository.
const GIT_COMMITS: usize = 20;

/// One program run the same way under every tool.
struct Workload {
    name: &'static str,
    program: PathBuf,
    args: Vec<String>,
}

/// The tools found on `PATH`.
struct Tools {
    heaptrack: Option<(PathBuf, PathBuf)>,
    valgrind: Option<PathBuf>,
}

/// Runs `cargo xtask accuracy`.
pub fn run() -> Result<ExitCode> {
    // The workloads must not depend on the user's git configuration or
    // locale. Set here, before this process starts any thread, so every
    // child (git, and the tools running it) inherits them.
    for (k, v) in [
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("LC_ALL", "C"),
    ] {
        std::env::set_var(k, v);
    }
    let paths = Paths::locate()?;
    let tools = Tools {
        heaptrack: util::which("heaptrack").zip(util::which("heaptrack_print")),
        valgrind: util::which("valgrind"),
    };
    util::build_memtrace(&paths)?;
    let dir = paths.report.join("accuracy");
    let (workloads, missing) = workloads(&dir)?;

    let mut table = Table::new(&[
        "program",
        "figure",
        "memtrace",
        "heaptrack",
        "valgrind memcheck",
    ]);
    table.align_left(&[1, 2, 3, 4]);
    let mut notes: Vec<String> = missing;
    for w in &workloads {
        let m = memtrace_column(&paths, w, &mut notes)?;
        let h = match &tools.heaptrack {
            Some((ht, print)) => heaptrack_column(&paths, ht, print, w, &mut notes)?,
            None => Column::uniform("not installed"),
        };
        let v = match &tools.valgrind {
            Some(vg) => valgrind_column(&paths, vg, w)?,
            None => Column::uniform("not installed"),
        };
        let (m, h, v) = (m.cells(), h.cells(), v.cells());
        for (i, figure) in METRICS
            .iter()
            .map(|s| s.to_string())
            .chain((1..=TOP_SITES).map(|i| format!("top site {i} (calls)")))
            .enumerate()
        {
            let program = if i == 0 { w.name } else { "" };
            table.row(vec![
                program.to_string(),
                figure,
                m[i].clone(),
                h[i].clone(),
                v[i].clone(),
            ]);
        }
    }

    let md = markdown(&table, &workloads, &notes, &tools);
    println!();
    print!("{}", table.text());
    println!();
    for n in &notes {
        println!("note: {n}");
    }
    let md_path = paths.write("accuracy.md", &md)?;
    println!("\nwritten: {}", md_path.display());
    Ok(ExitCode::SUCCESS)
}

/// The workloads whose programs are installed, and a note for each one that
/// is not. Creates the git repository and the C file under `dir`.
fn workloads(dir: &Path) -> Result<(Vec<Workload>, Vec<String>)> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let source = dir.join("list.c");
    std::fs::write(&source, C_SOURCE).with_context(|| format!("{}", source.display()))?;
    let repo = dir.join("repo");
    let show = |p: &Path| p.display().to_string();
    let candidates = [
        ("sqlite3", vec![":memory:".to_string(), SQL.to_string()]),
        ("jq", vec!["-n".to_string(), JQ.to_string()]),
        // Isolated (-I): the working directory (listed while importing
        // json, and holding a varying number of traces) and the user's site
        // packages stay out of sys.path.
        (
            "python3",
            vec!["-I".to_string(), "-c".to_string(), PYTHON.to_string()],
        ),
        (
            "git",
            vec![
                "-C".to_string(),
                show(&repo),
                "log".to_string(),
                "--oneline".to_string(),
            ],
        ),
        (
            "gcc",
            vec![
                "-c".to_string(),
                show(&source),
                "-o".to_string(),
                show(&dir.join("list.o")),
            ],
        ),
    ];
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for (name, args) in candidates {
        let program = Path::new("/usr/bin").join(name);
        if !program.is_file() {
            missing.push(format!(
                "{name}: skipped, {} is not installed",
                program.display()
            ));
            continue;
        }
        if name == "git" {
            make_repo(&program, &repo)?;
        }
        found.push(Workload {
            name,
            program,
            args,
        });
    }
    Ok((found, missing))
}

/// A repository of `GIT_COMMITS` commits with fixed authors and dates, so
/// that `git log` prints the same hashes every time.
fn make_repo(git: &Path, repo: &Path) -> Result<()> {
    let run = |args: &[&str], date: u64| -> Result<()> {
        let stamp = format!("{} +0000", 1_700_000_000 + date * 3600);
        let mut cmd = Command::new(git);
        cmd.arg("-C")
            .arg(repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "memtrace")
            .env("GIT_AUTHOR_EMAIL", "memtrace@example.invalid")
            .env("GIT_COMMITTER_NAME", "memtrace")
            .env("GIT_COMMITTER_EMAIL", "memtrace@example.invalid")
            .env("GIT_AUTHOR_DATE", &stamp)
            .env("GIT_COMMITTER_DATE", &stamp);
        util::output(&mut cmd).map(drop)
    };
    std::fs::create_dir_all(repo).with_context(|| format!("cannot create {}", repo.display()))?;
    run(&["init", "-q", "-b", "main"], 0)?;
    for i in 0..GIT_COMMITS {
        let file = format!("file{i:02}.txt");
        std::fs::write(repo.join(&file), format!("line {i}\n").repeat(i + 1))
            .with_context(|| format!("cannot write {file}"))?;
        run(&["add", &file], i as u64)?;
        run(&["commit", "-q", "-m", &format!("Add {file}")], i as u64)?;
    }
    Ok(())
}

/// One tool's cells for one workload.
struct Column {
    /// One cell per entry of `METRICS`.
    figures: [String; METRICS.len()],
    /// `function (calls)`, most calls first.
    sites: Vec<String>,
}

impl Column {
    /// Every cell the same (a tool that is not installed).
    fn uniform(text: &str) -> Column {
        Column {
            figures: std::array::from_fn(|_| text.to_string()),
            sites: vec![text.to_string(); TOP_SITES],
        }
    }

    /// The cells in table order: the figures, then `TOP_SITES` sites.
    fn cells(self) -> Vec<String> {
        let mut cells: Vec<String> = self.figures.into();
        cells.extend(self.sites.into_iter().take(TOP_SITES));
        cells.resize(METRICS.len() + TOP_SITES, String::new());
        cells
    }
}

/// `B B in N` for a leak class.
fn amount(bytes: u64, blocks: u64) -> String {
    format!("{bytes} B in {blocks}")
}

/// memtrace: the report's totals and `functions`, the leak report's totals.
fn memtrace_column(paths: &Paths, w: &Workload, notes: &mut Vec<String>) -> Result<Column> {
    let trace = paths.traces.join(format!("accuracy.{}.trace", w.name));
    let leaks = paths.traces.join(format!("accuracy.{}.leaks.json", w.name));
    util::remove_file(&trace)?;
    util::remove_file(&leaks)?;
    let mut cmd = Command::new(&paths.memtrace);
    cmd.args(["run", "-q", "--no-follow", "-o"])
        .arg(&trace)
        .args(["--check-leaks", "--error-exitcode", "0", "--format", "json"])
        .arg("--leaks-output")
        .arg(&leaks)
        .arg("--")
        .arg(&w.program)
        .args(&w.args)
        .current_dir(&paths.traces);
    eprintln!("xtask: {}", util::show(&cmd));
    util::measure(&mut cmd)?.ok(&cmd)?;
    let report = util::report_json(paths, &trace)?;
    let figures = MemtraceFigures::from_report(&report)?;
    let leaks: Value = serde_json::from_str(
        &std::fs::read_to_string(&leaks).with_context(|| format!("{}", leaks.display()))?,
    )
    .with_context(|| format!("{} is not JSON", leaks.display()))?;
    if leaks["scan"]["complete"].as_bool() != Some(true) {
        notes.push(format!(
            "{}: memtrace's leak scan was incomplete: {}",
            w.name, leaks["scan"]["incomplete"]
        ));
    }
    let class = |totals: &Value, c: &str| -> Result<(u64, u64)> {
        let pair = &totals[c];
        match (pair["bytes"].as_u64(), pair["blocks"].as_u64()) {
            (Some(bytes), Some(blocks)) => Ok((bytes, blocks)),
            _ => bail!("the leak report has no {c} totals"),
        }
    };
    let classes = ["definite", "indirect", "possible", "reachable"];
    let mut lost = [(0, 0); 4];
    for (slot, c) in lost.iter_mut().zip(classes) {
        *slot = class(&leaks["totals"], c)?;
    }
    let mut suppressed = Vec::new();
    for c in classes {
        let (bytes, blocks) = class(&leaks["suppressed"], c).unwrap_or((0, 0));
        if blocks > 0 {
            suppressed.push(format!("{c} {}", amount(bytes, blocks)));
        }
    }
    if !suppressed.is_empty() {
        notes.push(format!(
            "{}: memtrace's built-in suppressions (one-time blocks of the C runtime, which memcheck sees freed by its freeres hooks, and of the dynamic loader; `memtrace leaks --list-builtin` gives the reason for each) took {}",
            w.name,
            suppressed.join(", ")
        ));
    }
    let sites = report["functions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .take(TOP_SITES)
        .map(|f| {
            format!(
                "{} ({})",
                f["name"].as_str().unwrap_or("?"),
                f["allocations"].as_u64().unwrap_or(0)
            )
        })
        .collect();
    Ok(Column {
        figures: [
            figures.calls.to_string(),
            figures.peak.to_string(),
            figures.unfreed.to_string(),
            amount(lost[0].0, lost[0].1),
            amount(lost[1].0, lost[1].1),
            amount(lost[2].0, lost[2].1),
            amount(lost[3].0, lost[3].1),
        ],
        sites,
    })
}

/// heaptrack: its data file replayed (as `heaptrack-check` does) and
/// heaptrack_print's "MOST CALLS TO ALLOCATION FUNCTIONS". heaptrack has no
/// leak classes.
fn heaptrack_column(
    paths: &Paths,
    heaptrack: &Path,
    heaptrack_print: &Path,
    w: &Workload,
    notes: &mut Vec<String>,
) -> Result<Column> {
    let name = format!("accuracy.{}", w.name);
    let h = heaptrack::heaptrack_figures(
        paths,
        heaptrack,
        heaptrack_print,
        &name,
        &w.program,
        &w.args,
    )?;
    let top = heaptrack::most_calls(heaptrack_print, &h.file, TOP_SITES)?;
    let with_own = |all: u64, adjusted: u64| {
        if all == adjusted {
            all.to_string()
        } else {
            format!("{all} ({adjusted} without heaptrack's own)")
        }
    };
    for (what, n) in &h.own_allocations {
        notes.push(format!("{}: heaptrack's own runtime: {n} x {what}", w.name));
    }
    let none = || "none".to_string();
    Ok(Column {
        figures: [
            with_own(h.exact.calls, h.adjusted.calls),
            with_own(h.exact.peak, h.adjusted.peak),
            with_own(h.exact.live_bytes, h.adjusted.live_bytes),
            none(),
            none(),
            none(),
            none(),
        ],
        sites: top
            .iter()
            .map(|t| {
                if t.location.starts_with("0x") && !t.module.is_empty() {
                    format!("{} in {} ({})", t.location, t.module, t.calls)
                } else {
                    format!("{} ({})", t.location, t.calls)
                }
            })
            .collect(),
    })
}

/// valgrind memcheck: the HEAP SUMMARY and the LEAK SUMMARY. memcheck has
/// no peak and no per-site call counts.
fn valgrind_column(paths: &Paths, valgrind: &Path, w: &Workload) -> Result<Column> {
    let name = format!("accuracy.{}", w.name);
    let m = valgrind::memcheck(paths, valgrind, &name, &w.program, &w.args)?;
    let a = |x: valgrind::Amount| amount(x.bytes, x.blocks);
    Ok(Column {
        figures: [
            m.allocs.to_string(),
            "none".to_string(),
            m.in_use_at_exit.bytes.to_string(),
            a(m.definite),
            a(m.indirect),
            a(m.possible),
            a(m.reachable),
        ],
        sites: vec!["none".to_string(); TOP_SITES],
    })
}

/// The report: the table, the notes, what each tool counts, the commands,
/// the machine.
fn markdown(table: &Table, workloads: &[Workload], notes: &[String], tools: &Tools) -> String {
    let mut md = String::from("# Accuracy against heaptrack and valgrind\n\n");
    let _ = writeln!(
        md,
        "`cargo xtask accuracy`, {} (UTC), on {}.\n",
        today(),
        cpu_model()
    );
    md.push_str(&table.markdown());
    md.push('\n');
    for n in notes {
        let _ = writeln!(md, "- {n}");
    }
    md.push_str(LEGEND);
    let _ = writeln!(md, "\n## Workloads\n\n```sh");
    for w in workloads {
        let mut cmd = Command::new(&w.program);
        cmd.args(&w.args);
        let _ = writeln!(md, "{}", util::show(&cmd));
    }
    let _ = writeln!(md, "```\n\n## Machine\n");
    for (k, v) in util::machine_info() {
        let _ = writeln!(md, "- {k}: {v}");
    }
    if let Some((ht, _)) = &tools.heaptrack {
        let _ = writeln!(md, "- heaptrack: {}", util::version(ht));
    }
    if let Some(vg) = &tools.valgrind {
        let _ = writeln!(md, "- valgrind: {}", util::version(vg));
    }
    for w in workloads {
        let _ = writeln!(md, "- {}: {}", w.name, util::version(&w.program));
    }
    md
}

/// What each tool's figures are, printed under the table.
const LEGEND: &str = "
What each tool counts (\"none\": the tool does not report that figure):

- **allocation calls**: memtrace, `totals.allocations` of `memtrace report --format json`:
  calls that returned a new block (malloc, calloc, realloc, the aligned
  allocators, `new`; a realloc counts once, moved or not). heaptrack: allocation
  events of its data file (the same calls; a realloc counts once). memcheck:
  `total heap usage: N allocs`, where realloc always moves, so counts as an
  alloc and a free.
- **peak heap**: the most requested bytes live at once (memtrace and heaptrack;
  memcheck has no peak).
- **unfreed at exit**: requested bytes never freed. memcheck's `in use at exit`
  comes after its freeres hooks have freed the C and C++ runtimes' one-time
  blocks, so it is lower.
- **leak classes** (bytes in blocks): memtrace, `totals` of
  `memtrace run --check-leaks --format json` (after its built-in
  suppressions); memcheck, its LEAK SUMMARY. heaptrack does not classify leaks.
- **top sites**: the functions that called the allocator most often, with
  their calls. memtrace: `functions` of the report JSON (sites merged by
  function, as heaptrack merges them); a site is named by its first frame
  outside the C library (the caller of `strdup`, `fopen`), and an unnamed
  function by `module+0xOFFSET` of the return address, one entry per address.
  heaptrack: heaptrack_print's \"MOST CALLS TO ALLOCATION FUNCTIONS\", named by
  the innermost frame (`__GI___strdup` itself); it merges every unnamed function
  of a module into one entry, shown as the first address of this run (so its
  `0x...` entry gathers several of memtrace's `module+0x...` entries).
  memcheck does not count calls per site.
- heaptrack's preload library loads libstdc++, whose constructor allocates in
  every program; \"without heaptrack's own\" leaves out such allocations by
  constructors of libraries the program does not load itself (as
  `cargo xtask heaptrack-check` does).
- Only the program's own process is measured: memtrace runs with
  `--no-follow`, heaptrack and memcheck do not follow children here, so
  `gcc -c` is the driver, without cc1 and as.
";

/// Today's date, `YYYY-MM-DD` in UTC (`date -u +%F`).
fn today() -> String {
    util::output(Command::new("date").args(["-u", "+%F"]))
        .map_or_else(|_| "unknown date".to_string(), |d| d.trim().to_string())
}

/// The CPU model from `/proc/cpuinfo`.
fn cpu_model() -> String {
    util::machine_info()
        .into_iter()
        .find(|(k, _)| k == "CPU")
        .map_or_else(|| "unknown CPU".to_string(), |(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_have_every_cell() {
        let c = Column::uniform("not installed").cells();
        assert_eq!(c.len(), METRICS.len() + TOP_SITES);
        assert!(c.iter().all(|s| s == "not installed"));
        let short = Column {
            figures: std::array::from_fn(|_| "1".to_string()),
            sites: vec!["main (3)".to_string()],
        };
        assert_eq!(short.cells()[METRICS.len() + 1], "");
    }
}
