//! SARIF 2.1.0: one result per finding, at the allocation site's source
//! line, with the full stack.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};

use super::{headline, under_root, CiOptions, Finding, SourceFrame};
use crate::LeakClass;

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

/// The name SARIF results use for `--source-root` (GitHub's convention).
const SRCROOT: &str = "%SRCROOT%";

/// Percent-encodes a path for a URI: everything but unreserved characters,
/// `/` and a few harmless sub-delimiters (`:` is encoded, so that a
/// relative path is never read as a scheme).
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/!$&'()*+,;=@".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A SARIF `artifactLocation` for a file: relative to `%SRCROOT%` when it
/// lies under the source root, a `file://` URI when it is absolute, else
/// the relative path as the debug information has it.
fn artifact_location(path: &str, root: &Path) -> Value {
    if let Some(rel) = under_root(path, root) {
        json!({ "uri": uri_path(&rel), "uriBaseId": SRCROOT })
    } else if path.starts_with('/') {
        json!({ "uri": format!("file://{}", uri_path(path)) })
    } else {
        json!({ "uri": uri_path(path) })
    }
}

/// The `file://` URI of the source root, with the trailing slash SARIF
/// requires of a base.
fn root_uri(root: &Path) -> String {
    let mut path = root.display().to_string();
    if !path.ends_with('/') {
        path.push('/');
    }
    format!("file://{}", uri_path(&path))
}

fn location<F: SourceFrame>(f: &F, root: &Path) -> Value {
    let mut physical = json!({});
    if let Some(file) = f.file() {
        physical["artifactLocation"] = artifact_location(file, root);
        if let Some(line) = f.line().filter(|&l| l > 0) {
            physical["region"] = json!({ "startLine": line });
        }
    }
    let mut loc = json!({});
    if physical.as_object().is_some_and(|o| !o.is_empty()) {
        loc["physicalLocation"] = physical;
    }
    if let Some(function) = f.function() {
        loc["logicalLocations"] = json!([{ "fullyQualifiedName": function, "kind": "function" }]);
    }
    loc
}

/// The findings as a SARIF 2.1.0 log: one result per finding, at the
/// allocation site's source line, with the full stack; classes in
/// `options.fail_on` are errors, the others notes. The run's invocation is
/// successful only when the scan is complete: `incomplete` (why it is not)
/// is `None`; else it is said in an error notification.
pub fn sarif<F: SourceFrame>(
    findings: &[Finding<'_, F>],
    incomplete: Option<&str>,
    options: &CiOptions<'_>,
) -> Value {
    let CiOptions {
        fail_on,
        root,
        tool_version,
    } = *options;
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
    let results: Vec<Value> = findings
        .iter()
        .map(|r| {
            let index = LeakClass::ALL.iter().position(|&c| c == r.class).unwrap_or(0);
            let frames: Vec<Value> = r
                .stack
                .iter()
                .map(|f| {
                    let mut frame = json!({ "location": location(f, root) });
                    if let Some(m) = f.module() {
                        frame["module"] = json!(m);
                    }
                    frame
                })
                .collect();
            let mut site = location(r.site, root);
            if site.get("physicalLocation").is_none() {
                // Code scanning needs a file; without debug info, name the module.
                if let Some(m) = r.site.module() {
                    site["physicalLocation"] = json!({ "artifactLocation": artifact_location(m, root) });
                }
            }
            json!({
                "ruleId": rule(r.class).0,
                "ruleIndex": index,
                "level": if fail_on.contains(&r.class) { "error" } else { "note" },
                "message": { "text": format!("{} (allocated in {})", headline(r), r.site.describe()) },
                "locations": [site],
                "stacks": [{ "message": { "text": "allocation stack" }, "frames": frames }],
                "properties": {
                    "class": r.class.name(),
                    "bytes": r.bytes,
                    "blocks": r.blocks,
                    "indirectBytes": r.indirect_bytes,
                },
            })
        })
        .collect();
    let mut invocation = json!({ "executionSuccessful": incomplete.is_none() });
    if let Some(why) = incomplete {
        invocation["toolExecutionNotifications"] = json!([{
            "level": "error",
            "message": { "text": format!("leak scan incomplete: {why}") },
            "descriptor": { "id": "memtrace/scan-incomplete" },
        }]);
    }
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "invocations": [invocation],
            "tool": { "driver": {
                "name": "memtrace",
                "version": tool_version,
                "informationUri": "https://github.com/memtrace/memtrace",
                "rules": rules,
            }},
            "originalUriBaseIds": { (SRCROOT): { "uri": root_uri(root) } },
            "results": results,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_percent_encoded_and_based_on_the_source_root() {
        assert_eq!(uri_path("src/a b/ü:x#1.c"), "src/a%20b/%C3%BC%3Ax%231.c");
        let root = Path::new("/nonexistent-root/repo");
        assert_eq!(
            artifact_location("/nonexistent-root/repo/src/main.c", root),
            json!({ "uri": "src/main.c", "uriBaseId": "%SRCROOT%" })
        );
        assert_eq!(
            artifact_location("/usr/include/x 1.h", root),
            json!({ "uri": "file:///usr/include/x%201.h" })
        );
        assert_eq!(
            artifact_location("./csu/../csu/libc-start.c", root),
            json!({ "uri": "./csu/../csu/libc-start.c" })
        );
        assert_eq!(root_uri(root), "file:///nonexistent-root/repo/");
        assert_eq!(root_uri(Path::new("/")), "file:///");
    }
}
