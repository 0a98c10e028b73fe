//! Files that others can plant where memtrace, running as root in CI, reads
//! them (issue #18): a trace naming a huge sparse module file, a trace of
//! zstd bombs, a trace that keeps growing while it is read, and a bad
//! record deep in a block. Each is crafted here; the tests assert exit
//! codes and exact lines. How long these take and how much memory is
//! measured separately (docs/security.md), never asserted.

mod common;
use common::*;

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use memtrace_format::*;

const GIB: u64 = 1 << 30;
/// Where the crafted module is loaded in the crafted traces.
const LOAD_BIAS: u64 = 0x1000_0000;

fn header() -> Header {
    Header {
        pid: 4242,
        ppid: 1,
        exe: "/usr/bin/planted".into(),
        cmdline: vec!["planted".into()],
        page_size: 4096,
        pointer_size: 8,
        ..Header::default()
    }
}

fn malloc(ts: u64, addr: u64) -> ThreadItem {
    ThreadItem::Heap(HeapEvent {
        func: Func::Malloc as u8,
        ts,
        addr,
        size: 64,
        usable: 72,
        stack: 1,
        ..Default::default()
    })
}

/// A complete trace whose one stack is inside the module at `module`, with
/// one allocation that the leak scan found unreached.
fn module_trace(trace: &Path, module: &Path) {
    let file = File::create(trace).unwrap();
    let mut w = Writer::new(file, &header(), Codec::Zstd(1)).unwrap();
    let m = Module {
        path: module.to_str().unwrap().into(),
        build_id: None,
        load_bias: LOAD_BIAS,
        segments: vec![Segment {
            vaddr: 0,
            memsz: 0x1_0000,
            flags: 5,
        }],
    };
    w.module_loaded(0, &m).unwrap();
    w.stack_nodes(1, &[(0, LOAD_BIAS + 0x100)]).unwrap();
    w.batch(1, &[ThreadItem::Start { ts: 1 }, malloc(2, 0x5000)])
        .unwrap();
    w.watermark(10).unwrap();
    w.leak_scan(&LeakScan {
        ts: 9,
        blocks: vec![ScannedBlock {
            addr: 0x5000,
            size: 64,
            stack: 1,
            reach: Reach::Unreached,
        }],
        ..LeakScan::default()
    })
    .unwrap();
    w.finish(&Trailer {
        ts: 10,
        n_events: 1,
        n_stack_nodes: 2,
        n_threads: 1,
        n_dropped: 0,
    })
    .unwrap();
}

/// `memtrace ARGS` in `dir`, killed and failed if it runs 60 s.
fn run_in(dir: &Path, args: &[&str]) -> Output {
    output_within(
        memtrace().current_dir(dir).args(args),
        Duration::from_secs(60),
    )
}

/// Creates a sparse file of `len` bytes starting with `start`; false when
/// the file system would store it whole (then it is removed).
fn sparse_file(path: &Path, len: u64, start: &[u8]) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mut file = File::create(path).unwrap();
    file.write_all(start).unwrap();
    file.set_len(len).unwrap();
    if file.metadata().unwrap().blocks() * 512 > 1 << 20 {
        drop(file);
        std::fs::remove_file(path).unwrap();
        return false;
    }
    true
}

/// A valid ELF64 header of an x86-64 shared object with no section or
/// program headers.
fn elf_header() -> Vec<u8> {
    let mut h = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec();
    h.extend_from_slice(&3u16.to_le_bytes()); // ET_DYN
    h.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&[0; 24]); // e_entry, e_phoff, e_shoff
    h.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    for v in [64u16, 56, 0, 64, 0, 0] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

#[test]
fn a_module_path_naming_a_huge_sparse_file_is_not_read() {
    let test = "a_module_path_naming_a_huge_sparse_file_is_not_read";
    let dir = scratch("hostile-module");
    let zeros = dir.join("zeros-4g.so");
    let elf = dir.join("elf-20g.so");
    if !sparse_file(&zeros, 4 * GIB, &[]) || !sparse_file(&elf, 20 * GIB, &elf_header()) {
        skip(test, "the file system of target/ has no sparse files");
        return;
    }
    let zeros_warning = format!(
        "cannot parse {} as an ELF file: Invalid magic number: 0x0; its frames are not symbolized",
        zeros.display()
    );
    for (module, warnings) in [(&zeros, vec![zeros_warning]), (&elf, vec![])] {
        let name = format!("{}.trace", module.file_stem().unwrap().to_str().unwrap());
        module_trace(&dir.join(&name), module);

        let out = run_in(&dir, &["report", "--format", "json", &name]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["warnings"], serde_json::json!(warnings), "{name}");
        assert_eq!(num(&r["totals"], "events"), 1);
        assert_eq!(r["trace"]["complete"], true);

        // One definite leak of 64 bytes: exit 1, its frame named by its
        // module and offset only.
        let out = run_in(&dir, &["leaks", &name]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let first: Vec<&str> = text.lines().take(2).collect();
        let file_name = module.file_name().unwrap().to_str().unwrap();
        assert_eq!(
            first,
            [
                "64 bytes in 1 block are definitely lost".to_string(),
                format!("    at {file_name}+0x100 ({})", module.display()),
            ],
            "{name}"
        );
    }
    std::fs::remove_file(&zeros).unwrap();
    std::fs::remove_file(&elf).unwrap();
}

/// A block header for `stored` bytes that claim to decode to `raw_len`.
fn block(codec: u8, stored: &[u8], raw_len: usize) -> Vec<u8> {
    let mut out = b"MTBK".to_vec();
    out.extend_from_slice(&[codec, 0, 0, 0]);
    out.extend_from_slice(&(stored.len() as u32).to_le_bytes());
    out.extend_from_slice(&(raw_len as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(stored).to_le_bytes());
    out.extend_from_slice(stored);
    out
}

/// The preamble and header block, as the writer makes them.
fn trace_start() -> Vec<u8> {
    let mut w = Writer::new(Vec::new(), &header(), Codec::Raw).unwrap();
    std::mem::take(w.get_mut())
}

/// `n` zstd blocks of `size` zero bytes after the header, as one trace.
fn bombs(n: usize, size: usize) -> (Vec<u8>, usize) {
    let mut trace = trace_start();
    let zeros = vec![0u8; size];
    let one = block(1, &zstd::bulk::compress(&zeros, 19).unwrap(), size);
    for _ in 0..n {
        trace.extend(&one);
    }
    (trace, one.len())
}

fn refused_by_every_reader(dir: &Path, name: &str, line: &str) {
    for command in ["report", "leaks", "frag", "latency", "flamegraph"] {
        let out = run_in(dir, &[command, name]);
        assert_eq!(out.status.code(), Some(2), "{command}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stderr), line, "{command}");
        assert!(out.stdout.is_empty(), "{command}");
    }
}

#[test]
fn a_trace_of_zstd_bombs_is_refused_at_the_first() {
    let dir = scratch("hostile-bomb");
    let first = trace_start().len();
    // 200 blocks of 64 MiB each (417 KB): over the block limit.
    let (trace, _) = bombs(200, 64 << 20);
    std::fs::write(dir.join("bomb.trace"), &trace).unwrap();
    let line = format!(
        "memtrace: bomb.trace: trace is corrupt: block at byte {first}: block claims 67108864 \
         bytes of records, over the 16777216-byte limit\n"
    );
    refused_by_every_reader(&dir, "bomb.trace", &line);

    // 765 blocks of exactly the limit (421 KB): the fifth passes the
    // file's budget of 64 MiB + 256 decoded bytes per byte read.
    let (trace, one) = bombs(765, MAX_BLOCK);
    std::fs::write(dir.join("limit.trace"), &trace).unwrap();
    let header_block = first - 12;
    let fifth = first + 4 * one;
    let raw = 5 * MAX_BLOCK + header_block - 20;
    let stored = header_block + 5 * one;
    let line = format!(
        "memtrace: limit.trace: trace is corrupt: block at byte {fifth}: the blocks up to this \
         one decode to {raw} bytes from {stored} in the file, over the decompression budget \
         of 67108864 bytes and 256 per byte in the file\n"
    );
    refused_by_every_reader(&dir, "limit.trace", &line);
}

#[test]
fn a_bad_record_is_named_by_its_file_offset() {
    let dir = scratch("hostile-record");
    let mut trace = trace_start();
    let at = trace.len();
    // WATERMARK 5, NOTE "hi", then STACK_NODES whose node 1 has `back` 0:
    // byte 12 of the block's records, the 4th of record 3.
    let records = [6, 1, 5, 12, 3, 2, b'h', b'i', 4, 4, 1, 1, 0, 0x10];
    trace.extend(block(0, &records, records.len()));
    std::fs::write(dir.join("bad.trace"), &trace).unwrap();
    let raw = format!(
        "memtrace: bad.trace: trace is corrupt: byte {} (record 3 of the block at byte {at}): \
         stack node 1 has an invalid parent\n",
        at + 20 + 12
    );

    let mut trace = trace_start();
    let frame = zstd::bulk::compress(&records, 1).unwrap();
    trace.extend(block(1, &frame, records.len()));
    std::fs::write(dir.join("zbad.trace"), &trace).unwrap();
    let compressed = format!(
        "memtrace: zbad.trace: trace is corrupt: byte 12 of the decompressed block at byte \
         {at} (record 3): stack node 1 has an invalid parent\n"
    );
    for (name, line) in [("bad.trace", raw), ("zbad.trace", compressed)] {
        for command in ["report", "leaks", "frag", "dump"] {
            let out = run_in(&dir, &[command, name]);
            assert_eq!(out.status.code(), Some(2), "{command} {name}: {out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stderr),
                line,
                "{command} {name}"
            );
        }
    }
}

/// The first part of a trace still being written: the header, a stack,
/// `n` allocations of thread 1 and a watermark past them, flushed. The
/// writer is returned to go on.
fn growing_trace(path: &Path, n: u64) -> Writer<File> {
    let file = File::create(path).unwrap();
    // Raw blocks: a reader needs a while to get through them.
    let mut w = Writer::new(file, &header(), Codec::Raw).unwrap();
    w.stack_nodes(1, &[(0, 0x1234)]).unwrap();
    let items: Vec<ThreadItem> = (0..n).map(|i| malloc(i + 1, 0x10_0000 + i * 80)).collect();
    w.batch(1, &items).unwrap();
    w.watermark(n + 1).unwrap();
    w.flush().unwrap();
    w
}

/// Where `pid` has read `path` to, once it has read some of it: the
/// position of its descriptor (`/proc/PID/fdinfo`); `None` while it has
/// not opened it or not read yet.
fn read_position(pid: u32, path: &Path) -> Option<u64> {
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.flatten() {
        if std::fs::read_link(fd.path()).ok().as_deref() != Some(path) {
            continue;
        }
        let info =
            std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().to_str()?))
                .ok()?;
        let pos: u64 = info
            .lines()
            .next()?
            .strip_prefix("pos:")?
            .trim()
            .parse()
            .ok()?;
        return (pos > 0).then_some(pos);
    }
    None
}

fn spawn_in(dir: &Path, args: &[&str]) -> Child {
    memtrace()
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `child` has read some of `path` (its length is then fixed:
/// memtrace takes it before its first read) or has exited.
fn wait_for_first_read(child: &mut Child, path: &Path) {
    wait_until(
        "memtrace reading the trace",
        Duration::from_secs(60),
        || child.try_wait().unwrap().is_some() || read_position(child.id(), path).is_some(),
    );
}

fn finish(mut child: Child) -> (Option<i32>, serde_json::Value, String) {
    let mut stdout = Vec::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    let json = serde_json::from_slice(&stdout).unwrap_or(serde_json::Value::Null);
    (status.code(), json, stderr)
}

#[test]
fn a_trace_growing_while_it_is_read_is_read_as_it_was_opened() {
    let dir = scratch("hostile-growing");
    let path = dir.join("growing.trace");
    let w = growing_trace(&path, 400_000);
    let mut child = spawn_in(&dir, &["report", "--format", "json", "growing.trace"]);
    wait_for_first_read(&mut child, &path);
    // What comes now is past the length report took: a block that would
    // stop it with an error if it were read, and more events.
    drop(w);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&block(0, &[4, 4, 9, 1, 0, 0x10], 6))
        .unwrap();
    let (code, r, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(num(&r["totals"], "events"), 400_000);
    assert_eq!(r["trace"]["complete"], false);
    assert_eq!(
        r["trace"]["status"],
        "incomplete: no trailer (the program was killed, or is still running)"
    );
}

#[test]
fn follow_reads_a_growing_trace_to_its_trailer() {
    let dir = scratch("hostile-follow");
    let path = dir.join("growing.trace");
    let mut w = growing_trace(&path, 400_000);
    let mut child = spawn_in(
        &dir,
        &[
            "report",
            "--follow=120",
            "--format",
            "json",
            "growing.trace",
        ],
    );
    wait_for_first_read(&mut child, &path);
    w.batch(1, &[malloc(400_002, 0x8000_0000)]).unwrap();
    w.finish(&Trailer::default()).unwrap();
    let (code, r, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(num(&r["totals"], "events"), 400_001);
    assert_eq!(r["trace"]["complete"], true);

    // With no trailer coming, --follow ends when the file stops growing.
    let path = dir.join("stalled.trace");
    drop(growing_trace(&path, 10));
    let out = run_in(
        &dir,
        &["report", "--follow=1", "--format", "json", "stalled.trace"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(num(&r["totals"], "events"), 10);
    assert_eq!(
        r["trace"]["status"],
        "incomplete: no trailer (the program was killed, or is still running)"
    );
}

#[test]
fn multi_pass_commands_read_the_same_bytes_each_pass() {
    // frag reads the trace twice: both passes stop where the file ended
    // when the command started, so a block appended later is never seen.
    let dir = scratch("hostile-frag");
    let path: PathBuf = dir.join("growing.trace");
    let w = growing_trace(&path, 200_000);
    let mut child = spawn_in(&dir, &["frag", "--format", "json", "growing.trace"]);
    wait_for_first_read(&mut child, &path);
    drop(w);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    file.write_all(&block(0, &[4, 4, 9, 1, 0, 0x10], 6))
        .unwrap();
    let (code, r, stderr) = finish(child);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(num(&r, "requests"), 200_000);
}
