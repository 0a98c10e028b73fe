//! `memtrace report --family TRACE`: a process and the traced processes it
//! started, each with its totals.
//!
//! The family is read from the traces beside TRACE: a trace whose parent pid
//! is a family member's pid is a child (made by `fork`, then maybe `exec`),
//! and a trace with a member's pid is that process after an `exec`. When
//! TRACE carries the token of its `memtrace run` (every process of one run
//! has the same one), only traces with that token can be members, so an
//! earlier run's traces in the same directory never join, whatever their
//! pids. Only the headers are read to find the family; each member's totals
//! come from a replay of its trace, without symbolizing its stacks (the
//! totals need no symbol, and a `make -j` family has hundreds of traces).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use memtrace_analyze::report::{summary_from_reader, Summary, Totals};
use memtrace_analyze::units::{bytes, count};
use serde_json::{json, Value};

use memtrace_format::{DecodeError, Extent, Named, Reader};

/// The schema of the family's JSON.
pub const SCHEMA: &str = "memtrace-family/1";

/// One traced process of the family.
#[derive(Debug)]
pub struct Member {
    /// Its trace file.
    pub trace: PathBuf,
    /// Process id.
    pub pid: u32,
    /// Parent process id.
    pub ppid: u32,
    /// The executable.
    pub exe: String,
    /// Its command line.
    pub cmdline: Vec<String>,
    /// Forks from the first process (an `exec` keeps the depth).
    pub depth: usize,
    /// Whether the trace is whole.
    pub complete: bool,
    /// The process's totals.
    pub totals: Totals,
}

/// The family of `root`: the root first, then each member as it is found,
/// in the order the traces were created.
pub fn family(root: &Path) -> Result<Vec<Member>> {
    let dir = match root.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let root_header = header(root, Named::ByUser)?;
    let mut others = Vec::new();
    let entries =
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if !is_trace_name(&path) || same_file(&path, root) {
            continue;
        }
        // Traces that cannot be read are not family members we can show;
        // a FIFO, a link or a directory named like a trace is planted.
        match header(&path, Named::Found) {
            Ok(h) => {
                if root_header.family == 0 || h.family == root_header.family {
                    others.push((path, h));
                }
            }
            Err(e) => {
                if let Some(e @ DecodeError::NotRegularFile(_)) = e.downcast_ref::<DecodeError>() {
                    eprintln!("memtrace: skipping {}: {e}", path.display());
                }
            }
        }
    }
    others.sort_by_key(|(_, h)| h.start_unix_ns);
    let mut members = vec![(root.to_path_buf(), root_header, 0usize)];
    loop {
        let found = others.iter().position(|(_, h)| {
            members
                .iter()
                .any(|(_, m, _)| h.ppid == m.pid || h.pid == m.pid)
        });
        let Some(i) = found else { break };
        let (path, h) = others.remove(i);
        let depth = members
            .iter()
            .rev()
            .find(|(_, m, _)| h.ppid == m.pid || h.pid == m.pid)
            .map_or(0, |(_, m, d)| if h.pid == m.pid { *d } else { d + 1 });
        members.push((path, h, depth));
    }
    members
        .into_iter()
        .map(|(trace, h, depth)| {
            let named = if depth == 0 && trace == root {
                Named::ByUser
            } else {
                Named::Found
            };
            let r = summary(&trace, named)?;
            Ok(Member {
                pid: h.pid,
                ppid: h.ppid,
                exe: r.program.exe.clone(),
                cmdline: r.program.cmdline.clone(),
                complete: r.trace.complete,
                totals: r.totals,
                depth,
                trace,
            })
        })
        .collect()
}

/// The summary of one member's trace, read as long as it is now.
fn summary(path: &Path, named: Named) -> Result<Summary> {
    let context = || format!("{}", path.display());
    let reader = crate::progress::open(path, Extent::AsOpened, named).with_context(context)?;
    summary_from_reader(reader).with_context(context)
}

/// `*.trace`, or `*.trace.N`: the recorder's name when the default one
/// was taken.
fn is_trace_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    match name.rsplit_once(".trace") {
        Some((stem, rest)) if !stem.is_empty() => {
            rest.is_empty()
                || rest
                    .strip_prefix('.')
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
        _ => false,
    }
}

/// The fields of a trace header the family needs.
struct HeaderFacts {
    pid: u32,
    ppid: u32,
    start_unix_ns: u64,
    family: u64,
}

fn header(path: &Path, named: Named) -> Result<HeaderFacts> {
    let reader = Reader::open_named(path, Extent::AsOpened, named)
        .with_context(|| format!("{}", path.display()))?;
    let h = reader.header();
    Ok(HeaderFacts {
        pid: h.pid,
        ppid: h.ppid,
        start_unix_ns: h.start_unix_ns,
        family: h.family,
    })
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The family as a table, a process per line, children indented.
pub fn render_text(members: &[Member]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Process family ({}):",
        count(members.len() as u64, "traced process")
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>10} {:>12} {:>12} {:>12}  program (trace)",
        "pid", "ppid", "calls", "allocated", "peak", "unfreed"
    );
    for m in members {
        let pid = format!("{}{}", "  ".repeat(m.depth), m.pid);
        let t = &m.totals;
        let _ = writeln!(
            out,
            "  {:<16} {:>8} {:>10} {:>12} {:>12} {:>12}  {} ({}){}",
            pid,
            m.ppid,
            t.events,
            bytes(t.bytes_allocated),
            bytes(t.peak_bytes),
            bytes(t.unfreed_bytes),
            m.cmdline.join(" "),
            m.trace.display(),
            if m.complete { "" } else { "  INCOMPLETE" }
        );
    }
    let sum = |f: fn(&Totals) -> u64| members.iter().map(|m| f(&m.totals)).sum::<u64>();
    let _ = writeln!(
        out,
        "  {:<16} {:>8} {:>10} {:>12} {:>12} {:>12}",
        "all",
        "",
        sum(|t| t.events),
        bytes(sum(|t| t.bytes_allocated)),
        "",
        bytes(sum(|t| t.unfreed_bytes)),
    );
    out
}

/// The family as JSON (schema `memtrace-family/1`); each member's `totals`
/// are its report's.
pub fn to_json(members: &[Member]) -> Result<Value> {
    let processes = members
        .iter()
        .map(|m| {
            Ok(json!({
                "trace": m.trace.display().to_string(),
                "pid": m.pid,
                "ppid": m.ppid,
                "exe": m.exe,
                "cmdline": m.cmdline,
                "depth": m.depth,
                "complete": m.complete,
                "totals": serde_json::to_value(&m.totals)?,
            }))
        })
        .collect::<Result<Vec<Value>>>()?;
    Ok(json!({"schema": SCHEMA, "processes": processes}))
}
