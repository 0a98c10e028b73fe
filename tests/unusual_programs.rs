//! Programs that use the allocator in unusual ways: their own `malloc`
//! (which no `LD_PRELOAD` library can interpose: memtrace must say so), and
//! glibc's extras (`calloc` overflow, `malloc_usable_size`, `mallopt`,
//! `malloc_trim`), which must behave exactly as without memtrace; and a
//! `#!` script, which is traced through its interpreter.

mod common;

use std::process::Command;

use common::{compile, memtrace, num, record, report_json, scratch, site, tag_line};

const OWN: &str = "fixtures/c/own_malloc.c";
const EXTRAS: &str = "fixtures/c/malloc_extras.c";
const FREE_POINTER: &str = "fixtures/c/free_pointer.c";

#[test]
fn a_program_with_its_own_malloc_is_reported_not_silently_empty() {
    let dir = scratch("own-malloc");
    let exe = compile("cc", OWN, &["-O0", "-g"], &dir);
    let out = record(&dir, "own.trace", &[exe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "own allocator: 12 blocks, 1536 bytes\n"
    );
    let expected = format!(
        "malloc, calloc, realloc, free are defined in {}, which the loader binds \
         before memtrace: calls to them are not recorded",
        exe.display()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("memtrace: {expected}\n")
    );
    let report = report_json(&dir.join("own.trace"));
    assert_eq!(report["trace"]["complete"], true);
    assert_eq!(report["trace"]["notes"], serde_json::json!([expected]));
    // memalign and the others are still memtrace's; nothing reached them.
    assert_eq!(num(&report["totals"], "events"), 0);
    let text = common::memtrace_stdout(&dir, &["report", "own.trace"]);
    assert!(
        text.lines()
            .any(|l| l == format!("recorder note: {expected}")),
        "{text}"
    );
}

#[test]
fn a_program_using_the_system_allocator_gets_no_such_note() {
    let dir = scratch("own-malloc-not");
    let exe = compile("cc", EXTRAS, &["-O0", "-g"], &dir);
    let out = record(&dir, "x.trace", &[exe.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let report = report_json(&dir.join("x.trace"));
    assert_eq!(report["trace"]["notes"], serde_json::json!([]));
}

/// A non-PIE executable that takes `free`'s address has an undefined
/// `free` whose value is a PLT stub, which `dlsym` returns: not a `free`
/// of its own. No warning, and the frees are recorded.
#[test]
fn a_non_pie_program_taking_frees_address_gets_no_such_note() {
    let dir = scratch("free-pointer");
    let exe = compile(
        "cc",
        FREE_POINTER,
        &["-O0", "-g", "-no-pie", "-fno-pic"],
        &dir,
    );
    // The case under test: `free` undefined in .dynsym, with a value.
    let bytes = std::fs::read(&exe).unwrap();
    let elf = goblin::elf::Elf::parse(&bytes).unwrap();
    assert_eq!(elf.header.e_type, goblin::elf::header::ET_EXEC, "not PIE");
    let free = elf
        .dynsyms
        .iter()
        .find(|s| elf.dynstrtab.get_at(s.st_name) == Some("free"))
        .expect("free in .dynsym");
    assert_eq!(free.st_shndx, 0, "free is undefined");
    assert_ne!(free.st_value, 0, "free's value is its PLT stub");

    let out = record(&dir, "p.trace", &[exe.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "freed 10 blocks through free\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    let report = report_json(&dir.join("p.trace"));
    assert_eq!(report["trace"]["notes"], serde_json::json!([]));
    let site = site(&report, "pointer_site");
    assert_eq!(num(site, "allocations"), 10);
    assert_eq!(num(site, "bytes_allocated"), 1000);
    assert_eq!(num(site, "frees"), 10);
    assert_eq!(
        site["line"].as_u64(),
        Some(tag_line(FREE_POINTER, "@site pointer_site"))
    );
}

/// What malloc_extras prints, derived in its header comment.
const EXTRAS_OUTPUT: &str = "\
calloc overflow: NULL ENOMEM
calloc overflow: NULL ENOMEM
reallocarray overflow: NULL ENOMEM
malloc_usable_size(malloc(100)) = 104
malloc_usable_size(malloc(100000)) = 100008
mallopt(M_MMAP_THRESHOLD, 65536) = 1
malloc_usable_size(malloc(1 MiB)) = 1052656
mallopt(M_TRIM_THRESHOLD, 1 GiB) = 1
malloc_trim(0) = 1
";

#[test]
fn calloc_overflow_and_glibc_extras_behave_as_without_memtrace() {
    let dir = scratch("malloc-extras");
    let exe = compile("cc", EXTRAS, &["-O0", "-g"], &dir);
    let native = Command::new(&exe).output().unwrap();
    assert!(native.status.success());
    assert_eq!(String::from_utf8_lossy(&native.stdout), EXTRAS_OUTPUT);

    let out = memtrace()
        .current_dir(&dir)
        .args(["run", "-q", "-o", "x.trace", "--"])
        .arg(&exe)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), EXTRAS_OUTPUT);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");

    let report = report_json(&dir.join("x.trace"));
    assert_eq!(report["trace"]["complete"], true);
    // The two overflowing callocs, and nothing else, failed.
    assert_eq!(num(&report["totals"], "failed"), 2);
    let usable = site(&report, "usable_site");
    assert_eq!(num(usable, "allocations"), 3);
    assert_eq!(num(usable, "bytes_allocated"), 100 + 100_000 + (1 << 20));
    assert_eq!(num(usable, "frees"), 3);
    assert_eq!(num(usable, "line"), tag_line(EXTRAS, "@site usable_site"));
    let trim = site(&report, "trim_site");
    assert_eq!(num(trim, "allocations"), 200);
    assert_eq!(num(trim, "bytes_allocated"), 200_000);
    assert_eq!(num(trim, "frees"), 200);
}

#[test]
fn a_script_is_traced_through_its_interpreter_and_its_children() {
    use std::os::unix::fs::PermissionsExt;
    const LEAK_EXIT: &str = "fixtures/c/leak_exit.c";
    let dir = scratch("script");
    let fixture = compile("cc", LEAK_EXIT, &["-O0", "-g"], &dir);
    let script = dir.join("run.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\n{} leak 0\necho done\n", fixture.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = record(&dir, "script.trace", &["./run.sh"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");

    // The kernel runs the interpreter: the trace is /bin/sh's, running the script.
    let shell = report_json(&dir.join("script.trace"));
    assert_eq!(shell["trace"]["complete"], true);
    let sh = std::fs::canonicalize("/bin/sh").unwrap();
    assert_eq!(shell["program"]["exe"], sh.to_str().unwrap());
    assert_eq!(
        shell["program"]["cmdline"],
        serde_json::json!(["/bin/sh", "./run.sh"])
    );

    // The program the script starts has its own trace, with its known block.
    let children: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("memtrace.leak_exit.") && n.ends_with(".trace"))
        .collect();
    assert_eq!(children.len(), 1, "{children:?}");
    let child = report_json(&dir.join(&children[0]));
    assert_eq!(child["trace"]["complete"], true);
    assert_eq!(child["program"]["ppid"], shell["program"]["pid"]);
    let drop_one = site(&child, "drop_one");
    assert_eq!(num(drop_one, "allocations"), 1);
    assert_eq!(num(drop_one, "bytes_allocated"), 100);
    assert_eq!(num(drop_one, "frees"), 0);
    assert_eq!(num(drop_one, "line"), tag_line(LEAK_EXIT, "@site drop_one"));

    // `report --family` finds both, the child under its parent, each with
    // the totals of its own report. (The child got `memtrace run`'s family
    // token through the environment, as the shell did: a trace with another
    // token would not be a member.)
    let family = common::memtrace_json(
        &dir,
        &["report", "--family", "script.trace", "--format", "json"],
    );
    assert_eq!(family["schema"], "memtrace-family/1");
    let processes = family["processes"].as_array().unwrap();
    assert_eq!(processes.len(), 2);
    assert_eq!(processes[0]["pid"], shell["program"]["pid"]);
    assert_eq!(processes[0]["depth"], 0);
    assert_eq!(processes[0]["totals"], shell["totals"]);
    assert_eq!(processes[1]["pid"], child["program"]["pid"]);
    assert_eq!(processes[1]["ppid"], shell["program"]["pid"]);
    assert_eq!(processes[1]["depth"], 1);
    assert_eq!(processes[1]["totals"], child["totals"]);
    let text = common::memtrace_stdout(&dir, &["report", "--family", "script.trace"]);
    assert_eq!(
        text.lines().next(),
        Some("Process family (2 traced processes):")
    );
}

/// Two runs left their traces in one directory, and the second run's pids
/// happen to repeat the first's (pids are reused): `report --family` joins
/// only the traces carrying the root's run token.
#[test]
fn a_family_never_takes_in_another_runs_traces_with_the_same_pids() {
    use memtrace_format::{Codec, Header, Trailer, Writer};
    let dir = scratch("family-token");
    let write = |name: &str, pid: u32, ppid: u32, family: u64, start: u64| {
        let header = Header {
            pid,
            ppid,
            exe: format!("/bin/p{pid}"),
            cmdline: vec![format!("p{pid}")],
            start_unix_ns: start,
            family,
            ..Header::default()
        };
        let w = Writer::new(Vec::new(), &header, Codec::Raw).unwrap();
        let bytes = w.finish(&Trailer::default()).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    };
    // This run: 100 started 101.
    write("root.trace", 100, 1, 0xaa, 1_000);
    write("child.trace", 101, 100, 0xaa, 2_000);
    // Another run, later, whose processes got pids 100 and 102 (child of 100).
    write("other-root.trace", 100, 1, 0xbb, 5_000);
    write("other-child.trace", 102, 100, 0xbb, 6_000);

    // (pid, ppid, depth) of each member of `root`'s family.
    let members = |root: &str| -> Vec<(u64, u64, u64)> {
        let family = common::memtrace_json(&dir, &["report", "--family", root, "--format", "json"]);
        family["processes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (num(p, "pid"), num(p, "ppid"), num(p, "depth")))
            .collect()
    };
    assert_eq!(members("root.trace"), vec![(100, 1, 0), (101, 100, 1)]);
    assert_eq!(
        members("other-root.trace"),
        vec![(100, 1, 0), (102, 100, 1)]
    );
}
