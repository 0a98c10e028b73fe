//! `unsafe` lives in few, small, commented places, and ARCHITECTURE.md says
//! which: its list (between `<!-- unsafe-list -->` and
//! `<!-- /unsafe-list -->`) names exactly the source files that hold
//! `unsafe` code (blocks, functions, impls, extern blocks, `#[unsafe(..)]`
//! attributes) under `crates/*/src`, `src/` and `xtask/src`, and every
//! `unsafe` block has a `// SAFETY:` comment on it or in the six lines
//! above it. Tests, benches and examples are left out: they may poke at
//! the process freely.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`, as paths relative to the workspace root.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return;
    };
    for entry in entries {
        let entry = entry.expect("a directory entry");
        let rel = dir.join(entry.file_name());
        let kind = entry.file_type().expect("a file type");
        if kind.is_dir() {
            rust_files(root, &rel, out);
        } else if rel.extension().is_some_and(|e| e == "rs") {
            out.push(rel);
        }
    }
}

/// The sources the rule covers.
fn sources(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(root, Path::new("src"), &mut files);
    rust_files(root, Path::new("xtask/src"), &mut files);
    for krate in std::fs::read_dir(root.join("crates")).expect("crates/") {
        let name = krate.expect("a crate").file_name();
        rust_files(
            root,
            &Path::new("crates").join(name).join("src"),
            &mut files,
        );
    }
    files.sort();
    files
}

/// A line's code, without a `//` comment or the text of a string.
fn code_of(line: &str) -> String {
    let mut code = String::new();
    let mut in_string = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => in_string = !in_string,
            '\\' if in_string => {
                chars.next();
            }
            '/' if !in_string && chars.peek() == Some(&'/') => break,
            c if !in_string => code.push(c),
            _ => {}
        }
    }
    code
}

/// Whether `code` starts an `unsafe` item or block.
fn is_unsafe(code: &str) -> bool {
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '{' || c == '('))
        .filter(|w| !w.is_empty())
        .collect();
    code.contains("#[unsafe(")
        || words.windows(2).any(|w| {
            w[0] == "unsafe" && (w[1].starts_with('{') || ["fn", "impl", "extern"].contains(&w[1]))
        })
        || words.iter().any(|w| w.starts_with("unsafe{"))
}

/// Whether `code` opens an `unsafe` block (which needs a SAFETY comment).
fn opens_unsafe_block(code: &str) -> bool {
    let compact: String = code.split_whitespace().collect();
    compact.contains("unsafe{")
}

#[test]
fn architecture_lists_exactly_the_files_with_unsafe_code_and_each_block_says_why() {
    let root = common::root();
    let mut with_unsafe = BTreeSet::new();
    let mut uncommented = Vec::new();
    for file in sources(&root) {
        let text = std::fs::read_to_string(root.join(&file)).expect("a source file");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = code_of(line);
            if is_unsafe(&code) {
                with_unsafe.insert(file.display().to_string());
            }
            if opens_unsafe_block(&code) {
                let from = i.saturating_sub(6);
                if !lines[from..=i].iter().any(|l| l.contains("SAFETY")) {
                    uncommented.push(format!("{}:{}", file.display(), i + 1));
                }
            }
        }
    }
    assert!(
        uncommented.is_empty(),
        "unsafe blocks without a SAFETY comment: {uncommented:?}"
    );

    let architecture =
        std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let list = architecture
        .split_once("<!-- unsafe-list -->")
        .and_then(|(_, rest)| rest.split_once("<!-- /unsafe-list -->"))
        .map(|(list, _)| list)
        .expect("ARCHITECTURE.md has an unsafe list");
    let listed: BTreeSet<String> = list
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|p| p.ends_with(".rs"))
        .map(str::to_string)
        .collect();
    let missing: Vec<&String> = with_unsafe.difference(&listed).collect();
    let stale: Vec<&String> = listed.difference(&with_unsafe).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "ARCHITECTURE.md's unsafe list: not listed {missing:?}; listed without unsafe {stale:?}"
    );
}

#[test]
fn the_scanner_tells_unsafe_code_from_words() {
    assert!(is_unsafe("    let x = unsafe { f() };"));
    assert!(is_unsafe("pub unsafe fn raw() {"));
    assert!(is_unsafe("unsafe impl Send for X {}"));
    assert!(is_unsafe("unsafe extern \"C\" {"));
    assert!(is_unsafe("#[unsafe(no_mangle)]"));
    assert!(!is_unsafe(&code_of("#![forbid(unsafe_code)]")));
    assert!(!is_unsafe(&code_of("// unsafe { in a comment }")));
    assert!(!is_unsafe(&code_of("let s = \"unsafe { in a string }\";")));
    assert!(opens_unsafe_block("let v = unsafe{ g() };"));
    assert!(!opens_unsafe_block("pub unsafe fn raw() {"));
}
