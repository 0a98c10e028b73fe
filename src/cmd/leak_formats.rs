//! Machine-readable leak reports for CI: SARIF 2.1.0 and GitHub Actions
//! annotations.

use std::fmt::Write as _;
use std::path::Path;

use memtrace_analyze::leaks::{LeakRecord, LeakReport};
use memtrace_analyze::symbols::Frame;
use memtrace_leaks::LeakClass;
use serde_json::{json, Value};

/// A rule per class: its id and what it means.
fn rule(class: LeakClass) -> (&'static str, &'static str) {
    match class {
        LeakClass::Definite => (
            "memtrace/definitely-lost",
            "Memory was allocated and no pointer to it remains at exit.",
        ),
        LeakClass::Indirect => (
            "memtrace/indirectly-lost",
            "Memory is reachable only from blocks that are themselves lost.",
        ),
        LeakClass::Possible => (
            "memtrace/possibly-lost",
            "Memory is reachable at exit only through pointers into its middle.",
        ),
        LeakClass::Reachable => (
            "memtrace/still-reachable",
            "Memory is still pointed to at exit but was never freed.",
        ),
    }
}

/// `path` relative to `root` when it lies under it.
fn relative(path: &str, root: &Path) -> String {
    Path::new(path)
        .strip_prefix(root)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// "248 bytes in 5 blocks are definitely lost" (with the indirect part).
pub fn headline(r: &LeakRecord) -> String {
    let s = if r.blocks == 1 { "" } else { "s" };
    if r.indirect_bytes > 0 {
        format!(
            "{} ({} direct, {} indirect) bytes in {} block{s} are {}",
            r.bytes + r.indirect_bytes,
            r.bytes,
            r.indirect_bytes,
            r.blocks,
            r.class.phrase()
        )
    } else {
        format!(
            "{} bytes in {} block{s} are {}",
            r.bytes,
            r.blocks,
            r.class.phrase()
        )
    }
}

fn location(f: &Frame, root: &Path) -> Value {
    let mut physical = json!({});
    if let Some(file) = &f.file {
        physical["artifactLocation"] = json!({ "uri": relative(file, root) });
        if let Some(line) = f.line.filter(|&l| l > 0) {
            physical["region"] = json!({ "startLine": line });
        }
    }
    let mut loc = json!({});
    if physical.as_object().is_some_and(|o| !o.is_empty()) {
        loc["physicalLocation"] = physical;
    }
    if let Some(function) = &f.function {
        loc["logicalLocations"] = json!([{ "fullyQualifiedName": function, "kind": "function" }]);
    }
    loc
}

/// The report as a SARIF 2.1.0 log: one result per unsuppressed loss
/// record, at the allocation site's source line, with the full stack;
/// classes in `fail_on` are errors, the others notes.
pub fn sarif(report: &LeakReport, fail_on: &[LeakClass], root: &Path) -> Value {
    let rules: Vec<Value> = LeakClass::ALL
        .iter()
        .map(|&c| {
            let (id, text) = rule(c);
            json!({
                "id": id,
                "name": c.phrase().replace(' ', "-"),
                "shortDescription": { "text": format!("Memory {}", c.phrase()) },
                "fullDescription": { "text": text },
                "defaultConfiguration": {
                    "level": if fail_on.contains(&c) { "error" } else { "note" }
                },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .records
        .iter()
        .filter(|r| r.suppressed_by.is_none())
        .map(|r| {
            let index = LeakClass::ALL.iter().position(|&c| c == r.class).unwrap_or(0);
            let frames: Vec<Value> = r
                .stack
                .iter()
                .map(|f| {
                    let mut frame = json!({ "location": location(f, root) });
                    if let Some(m) = &f.module {
                        frame["module"] = json!(m);
                    }
                    frame
                })
                .collect();
            let mut site = location(&r.site, root);
            if site.get("physicalLocation").is_none() {
                // Code scanning needs a file; without debug info, name the module.
                if let Some(m) = &r.site.module {
                    site["physicalLocation"] = json!({ "artifactLocation": { "uri": relative(m, root) } });
                }
            }
            json!({
                "ruleId": rule(r.class).0,
                "ruleIndex": index,
                "level": if fail_on.contains(&r.class) { "error" } else { "note" },
                "message": { "text": format!("{} (allocated in {})", headline(r), r.site.describe()) },
                "locations": [site],
                "stacks": [{ "message": { "text": "allocation stack" }, "frames": frames }],
                "properties": { "bytes": r.bytes, "blocks": r.blocks, "indirectBytes": r.indirect_bytes },
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "memtrace",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/memtrace/memtrace",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// Escapes a workflow-command property or message (GitHub's rules).
fn escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

/// GitHub Actions annotations: `::error` for `fail_on` classes, `::notice`
/// for the others, at the allocation site, the stack in the message.
pub fn github(report: &LeakReport, fail_on: &[LeakClass], root: &Path) -> String {
    let mut out = String::new();
    for r in report.records.iter().filter(|r| r.suppressed_by.is_none()) {
        let level = if fail_on.contains(&r.class) {
            "error"
        } else {
            "notice"
        };
        let mut props = Vec::new();
        if let Some(file) = &r.site.file {
            props.push(format!("file={}", escape(&relative(file, root), true)));
            if let Some(line) = r.site.line {
                props.push(format!("line={line}"));
            }
        }
        props.push(format!(
            "title={}",
            escape(&format!("memtrace: {}", r.class.phrase()), true)
        ));
        let mut message = headline(r);
        for f in r.stack.iter().take(8) {
            let _ = write!(message, "\n  at {}", f.describe());
        }
        let _ = writeln!(
            out,
            "::{level} {}::{}",
            props.join(","),
            escape(&message, false)
        );
    }
    out
}
