//! dlopen after start, fork without exec, and `_exit`: nothing lost, each
//! process's trace separate and complete.

mod common;
use common::*;

const SOURCE: &str = "fixtures/c/lifecycle.c";

fn build(dir: &std::path::Path) -> std::path::PathBuf {
    let status = std::process::Command::new("cc")
        .args(["-O0", "-g", "-shared", "-fPIC", "-o"])
        .arg(dir.join("libplugin.so"))
        .arg(root().join("fixtures/c/plugin.c"))
        .status()
        .unwrap();
    assert!(status.success());
    compile("cc", SOURCE, &["-O0", "-g", "-pthread", "-ldl"], dir)
}

#[test]
fn a_library_loaded_by_dlopen_is_symbolized() {
    let dir = scratch("dlopen");
    let exe = build(&dir);
    let out = record(
        &dir,
        "d.trace",
        &[exe.to_str().unwrap(), "dlopen", dir.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = report_json(&dir.join("d.trace"));
    let s = site(&report, "plugin_alloc");
    assert_eq!(num(s, "allocations"), 3);
    assert_eq!(num(s, "bytes_allocated"), 231);
    assert_eq!(num(s, "frees"), 3);
    assert!(s["file"].as_str().unwrap().ends_with("fixtures/c/plugin.c"));
    assert_eq!(
        num(s, "line"),
        tag_line("fixtures/c/plugin.c", "@site plugin_alloc")
    );
    assert!(s["module"].as_str().unwrap().ends_with("libplugin.so"));
}

#[test]
fn a_forked_child_writes_its_own_complete_trace() {
    let dir = scratch("fork");
    let exe = build(&dir);
    let out = record(&dir, "parent.trace", &[exe.to_str().unwrap(), "fork"]);
    assert!(out.status.success());
    let parent = report_json(&dir.join("parent.trace"));
    assert_eq!(parent["trace"]["complete"], true);
    assert_eq!(num(site(&parent, "parent_site"), "allocations"), 4);
    assert!(parent["sites"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["function"] != "child_site"));

    // The child's trace sits beside the parent's, named by its pid.
    let children: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("memtrace.lifecycle.")
        })
        .collect();
    assert_eq!(children.len(), 1, "{children:?}");
    let child = report_json(&children[0]);
    assert_eq!(child["trace"]["complete"], true);
    assert_eq!(
        num(&child["program"], "ppid"),
        num(&parent["program"], "pid")
    );
    let s = site(&child, "child_site");
    assert_eq!(num(s, "allocations"), 6);
    assert_eq!(num(s, "bytes_allocated"), 6 * 222);
    assert_eq!(num(s, "line"), tag_line(SOURCE, "@site child_site"));
    // What the parent did before the fork is the parent's, not the child's.
    assert!(child["sites"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["function"] != "parent_site"));
}

#[test]
fn underscore_exit_loses_nothing() {
    let dir = scratch("exit");
    let exe = build(&dir);
    let out = record(&dir, "e.trace", &[exe.to_str().unwrap(), "_exit"]);
    assert_eq!(out.status.code(), Some(3));
    let report = report_json(&dir.join("e.trace"));
    assert_eq!(report["trace"]["complete"], true);
    let s = site(&report, "exit_site");
    assert_eq!(num(s, "allocations"), 5);
    assert_eq!(num(s, "unfreed_bytes"), 5 * 333);
}

/// Traces in `dir` other than `keep`.
fn other_traces(dir: &std::path::Path, keep: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".trace") && n != keep)
        .collect();
    names.sort();
    names
}

#[test]
fn children_are_traced_unless_no_follow() {
    // sh runs /bin/true as a child process (fork + exec).
    let script = "/bin/true; /bin/true";
    let dir = scratch("follow");
    let out = record(&dir, "sh.trace", &["sh", "-c", script]);
    assert!(out.status.success());
    let children = other_traces(&dir, "sh.trace");
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(
        children.iter().all(|n| n.starts_with("memtrace.true.")),
        "{children:?}"
    );
    for name in &children {
        assert_eq!(report_json(&dir.join(name))["trace"]["complete"], true);
    }

    let dir = scratch("no-follow");
    let out = memtrace()
        .current_dir(&dir)
        .args([
            "run",
            "-q",
            "--no-follow",
            "-o",
            "sh.trace",
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.join("sh.trace").exists());
    assert_eq!(other_traces(&dir, "sh.trace"), Vec::<String>::new());
}

#[test]
fn a_vfork_style_spawn_leaves_the_parent_recording() {
    let dir = scratch("spawn");
    let exe = build(&dir);
    let out = record(&dir, "p.trace", &[exe.to_str().unwrap(), "spawn"]);
    assert!(out.status.success());
    let report = report_json(&dir.join("p.trace"));
    assert_eq!(report["trace"]["complete"], true);
    let s = site(&report, "after_spawn_site");
    assert_eq!(num(s, "allocations"), 7);
    assert_eq!(num(s, "bytes_allocated"), 7 * 444);
    // Each /bin/true has its own trace.
    let children = other_traces(&dir, "p.trace");
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(
        children.iter().all(|c| c.starts_with("memtrace.true.")),
        "{children:?}"
    );
}
