//! Programs nobody here wrote run unchanged under `memtrace run`: same
//! output, same exit status, and a complete, self-consistent trace.

mod common;
use common::*;
use std::process::Command;

/// Runs `program` natively and under memtrace; returns the report.
fn same_behaviour(name: &str, program: &[&str], stdin: Option<&str>) -> serde_json::Value {
    let dir = scratch(name);
    let run = |cmd: &mut Command| {
        use std::io::Write;
        let mut child = cmd
            .current_dir(&dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or("").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let native = run(Command::new(program[0]).args(&program[1..]));
    let traced = run(memtrace()
        .args(["run", "-q", "-o", "t.trace", "--"])
        .args(program));
    assert_eq!(
        traced.status.code(),
        native.status.code(),
        "{name}: exit status"
    );
    assert_eq!(
        String::from_utf8_lossy(&traced.stdout),
        String::from_utf8_lossy(&native.stdout),
        "{name}: stdout differs"
    );
    assert_eq!(
        String::from_utf8_lossy(&traced.stderr),
        String::from_utf8_lossy(&native.stderr)
    );
    let report = report_json(&dir.join("t.trace"));
    assert_eq!(report["trace"]["complete"], true, "{name}");
    let totals = &report["totals"];
    assert!(num(totals, "allocations") > 0, "{name} made no allocation?");
    let sites = report["sites"].as_array().unwrap();
    let allocated: u64 = sites.iter().map(|s| num(s, "bytes_allocated")).sum();
    let freed: u64 = sites.iter().map(|s| num(s, "bytes_freed")).sum();
    assert_eq!(allocated, num(totals, "bytes_allocated"), "{name}");
    assert_eq!(allocated - freed, num(totals, "unfreed_bytes"), "{name}");
    report
}

#[test]
fn ls_lists_the_same() {
    same_behaviour("ls", &["ls", "-la", "/usr/share/doc/libc6"], None);
}

#[test]
fn sqlite3_answers_the_same() {
    let script = "create table t(a integer, b text);\n\
                  with recursive n(i) as (select 1 union all select i+1 from n where i < 2000)\n\
                  insert into t select i, printf('row %d', i) from n;\n\
                  select count(*), sum(a), max(b) from t;\n\
                  select b from t where a % 500 = 0 order by a;\n";
    same_behaviour("sqlite3", &["sqlite3", ":memory:"], Some(script));
}

#[test]
fn python3_computes_the_same() {
    let code = "import json, collections\n\
                d = collections.Counter(str(i % 97) for i in range(20000))\n\
                print(json.dumps(sorted(d.items())[:5]), sum(d.values()))\n";
    let report = same_behaviour("python3", &["python3", "-c", code], None);
    assert!(num(&report["totals"], "allocations") > 1000);
}
