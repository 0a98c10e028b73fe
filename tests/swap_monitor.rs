//! `memtrace swap` end to end, for real: a memory cgroup limited to 64 MiB,
//! a swap file, and the walker fixture (`fixtures/c/walker.c`) with a
//! working set that does not fit (256 MiB) or that fits (32 MiB).
//!
//! These tests need root and a memory cgroup controller (v1 or v2); without
//! them each prints why it skips. The cgroup and the swap file are removed by
//! `Drop` guards, so also when an assertion fails. The tests that change the
//! system's swap run one at a time (a lock), so that the `/proc/vmstat`
//! deltas taken around each run belong to it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use common::{compile, memtrace, scratch};
use serde_json::Value;

/// One system-changing test at a time.
static SYSTEM: Mutex<()> = Mutex::new(());

const LIMIT: u64 = 64 << 20;

/// Why this machine cannot run the real tests, if it cannot.
fn skip_reason() -> Option<String> {
    if !common::is_root() {
        return Some("not root: creating a cgroup and a swap file needs root".into());
    }
    if memory_hierarchy().is_none() {
        return Some("no memory cgroup controller (v1 or v2) is mounted".into());
    }
    None
}

fn skip_if_needed(test: &str) -> bool {
    match skip_reason() {
        Some(why) => {
            common::skip(test, &why);
            true
        }
        None => false,
    }
}

/// The directory under which a test cgroup is made, and whether it is v2.
fn memory_hierarchy() -> Option<(PathBuf, bool)> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        let (root, mount_point) = (fields[3], fields[4]);
        let mut r = right.split(' ');
        let fs_type = r.next()?;
        let options = r.nth(1).unwrap_or("");
        if fs_type == "cgroup" && options.split(',').any(|o| o == "memory") {
            // v1: under our own memory cgroup.
            let path = own
                .lines()
                .find_map(|l| {
                    let mut f = l.splitn(3, ':');
                    let (_, c, p) = (f.next()?, f.next()?, f.next()?);
                    c.split(',').any(|c| c == "memory").then(|| p.to_owned())
                })
                .unwrap_or_else(|| "/".into());
            let relative = path.strip_prefix(root).unwrap_or(&path);
            return Some((
                Path::new(mount_point).join(relative.trim_start_matches('/')),
                false,
            ));
        }
    }
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ")?;
        let mount_point = left.split(' ').nth(4)?;
        if right.starts_with("cgroup2 ") {
            let controllers =
                std::fs::read_to_string(Path::new(mount_point).join("cgroup.subtree_control"))
                    .unwrap_or_default();
            if controllers.split_whitespace().any(|c| c == "memory") {
                return Some((PathBuf::from(mount_point), true));
            }
        }
    }
    None
}

/// A memory cgroup limited to 64 MiB, removed on drop.
struct CgroupGuard {
    dir: PathBuf,
}

impl CgroupGuard {
    /// `swap`: whether the cgroup may use swap.
    fn new(name: &str, swap: bool) -> CgroupGuard {
        let (parent, v2) = memory_hierarchy().expect("a memory hierarchy");
        let dir = parent.join(format!("memtrace-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let guard = CgroupGuard { dir };
        if v2 {
            guard.write("memory.max", LIMIT);
            if !swap {
                guard.write("memory.swap.max", 0);
            }
        } else {
            guard.write("memory.limit_in_bytes", LIMIT);
            // With memsw, memory + swap is limited: equal to the limit, no swap.
            if !swap && guard.dir.join("memory.memsw.limit_in_bytes").exists() {
                guard.write("memory.memsw.limit_in_bytes", LIMIT);
            }
        }
        guard
    }

    fn write(&self, file: &str, value: u64) {
        std::fs::write(self.dir.join(file), value.to_string())
            .unwrap_or_else(|e| panic!("write {file}: {e}"));
    }

    /// A counter from the cgroup's `memory.stat`: v1's hierarchical
    /// `total_KEY` where it exists, else `KEY`.
    fn stat(&self, key: &str) -> u64 {
        let text = std::fs::read_to_string(self.dir.join("memory.stat")).expect("memory.stat");
        keyed(&text, &format!("total_{key}"))
            .or_else(|| keyed(&text, key))
            .unwrap_or_else(|| panic!("{key} not in memory.stat"))
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        // The monitored program has been reaped; its page cache charges
        // move to the parent on rmdir. Retry while the kernel lets go.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("could not remove the cgroup {}", self.dir.display());
    }
}

/// A 512 MiB swap file, enabled; disabled and removed on drop.
struct SwapGuard {
    file: PathBuf,
    on: bool,
}

impl SwapGuard {
    fn new(dir: &Path) -> Result<SwapGuard, String> {
        let file = dir.join("swapfile");
        let mut guard = SwapGuard {
            file: file.clone(),
            on: false,
        };
        let run = |cmd: &mut Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        run(Command::new("fallocate").args(["-l", "512M"]).arg(&file))?;
        run(Command::new("chmod").arg("600").arg(&file))?;
        run(Command::new("mkswap").arg(&file))?;
        run(Command::new("swapon").arg(&file))?;
        guard.on = true;
        Ok(guard)
    }
}

impl Drop for SwapGuard {
    fn drop(&mut self) {
        if self.on {
            let _ = Command::new("swapoff").arg(&self.file).status();
        }
        let _ = std::fs::remove_file(&self.file);
    }
}

fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

fn vmstat(key: &str) -> u64 {
    keyed(&std::fs::read_to_string("/proc/vmstat").unwrap(), key).unwrap()
}

fn walker(dir: &Path) -> PathBuf {
    compile("cc", "fixtures/c/walker.c", &["-O2"], dir)
}

/// Runs `memtrace swap -q --cgroup CG -o run.json -- ARGS` and returns the JSON timeline.
fn monitor(dir: &Path, cgroup: &CgroupGuard, args: &[&str]) -> Value {
    let json = dir.join("run.json");
    let out = memtrace()
        .arg("swap")
        .arg("-q")
        .arg("--cgroup")
        .arg(&cgroup.dir)
        .arg("-o")
        .arg(&json)
        .arg("--")
        .args(args)
        .output()
        .expect("run memtrace swap");
    assert!(
        out.status.success(),
        "memtrace swap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// The kernel folds per-CPU cgroup counters into `memory.stat` lazily, so
/// two reads of one counter, memtrace's last and the test's, may differ by
/// what was still pending at the first. Its bound (mm/memcontrol.c,
/// `memcg_rstat_updated` and `mem_cgroup_flush_stats`): each CPU holds up
/// to `MEMCG_CHARGE_BATCH` (64) updates before it adds them to the cgroup's
/// pending count, and a read flushes only once that count passes 64 per
/// online CPU; so at most 2 x 64 per online CPU, counted over all of the
/// cgroup's statistics together.
fn assert_close(exact: u64, cgroup: u64) {
    let batch = 2 * 64 * online_cpus();
    assert!(
        exact.abs_diff(cgroup) <= batch,
        "{exact} counted by memtrace, {cgroup} by the cgroup (allowed: {batch})"
    );
}

/// The kernel's count of online CPUs (`/sys/devices/system/cpu/online`,
/// e.g. "0-3,8-11"), which can exceed the CPUs this process may use.
fn online_cpus() -> u64 {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").expect("online CPUs");
    text.trim()
        .split(',')
        .map(|range| match range.split_once('-') {
            Some((a, b)) => b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1,
            None => 1,
        })
        .sum()
}

fn num(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// Milliseconds in each state, by name.
fn ms_in(summary: &Value, state: usize) -> u64 {
    summary["ms_in_state"][state].as_u64().unwrap()
}

#[test]
fn anonymous_working_set_over_the_limit_thrashes_and_the_control_stays_ok() {
    if skip_if_needed("anonymous_working_set_over_the_limit_thrashes") {
        return;
    }
    let _lock = SYSTEM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("swap-anon");
    let walker = walker(&dir);
    let walker = walker.to_str().unwrap();
    let swap = match SwapGuard::new(&dir) {
        Ok(swap) => swap,
        Err(why) => {
            common::skip(
                "anonymous_working_set_over_the_limit_thrashes",
                &format!("cannot enable a swap file: {why}"),
            );
            return;
        }
    };

    let cgroup = CgroupGuard::new("anon", true);
    let (pswpout, pgmajfault) = (vmstat("pswpout"), vmstat("pgmajfault"));
    let run = monitor(&dir, &cgroup, &[walker, "anon", "256", "12"]);
    let swapped_out = vmstat("pswpout") - pswpout;
    let majflt_system = vmstat("pgmajfault") - pgmajfault;
    let cg_majflt = cgroup.stat("pgmajfault");
    let summary = &run["summary"];
    eprintln!("{summary}");

    assert_eq!(summary["worst_state"], "thrashing");
    assert!(ms_in(summary, 3) >= 1000, "thrashed for at least 1 s");
    // The walker's 256 MiB do not fit in 64 MiB: at least 192 MiB go to swap.
    assert!(num(summary, "peak_swap_kib") >= 190 * 1024);
    // Its anonymous memory is charged to the cgroup, so never above the
    // limit (RSS also counts shared libraries, charged where first read).
    let peak_anon = run["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| num(s, "rss_anon_kib"))
        .max()
        .unwrap();
    assert!(peak_anon <= 64 * 1024, "{peak_anon} KiB anonymous");
    assert!(peak_anon >= 48 * 1024, "{peak_anon} KiB anonymous");
    // Swap-out is counted only system-wide: memtrace's first and last
    // samples lie inside the test's two reads of /proc/vmstat, and nothing
    // else swaps here, so the counts are the same.
    let monitored_out = num(summary, "swapout_pages");
    assert!(
        monitored_out >= 192 * 256,
        "swapped out {monitored_out} pages"
    );
    assert!(monitored_out <= swapped_out && monitored_out * 100 >= swapped_out * 99);
    // Major faults: the tree's own counts equal what the cgroup (which held
    // only the walker) counted, and are part of the system's delta (other
    // programs on the machine fault too, so that is an upper bound).
    let majflt = num(summary, "majflt");
    assert!(majflt >= 1000, "{majflt} major faults");
    assert_close(majflt, cg_majflt);
    assert!(majflt <= majflt_system, "{majflt} > {majflt_system}");
    drop(cgroup);

    // The control fits: never a limit hit, a fault or a page in swap.
    let cgroup = CgroupGuard::new("control", true);
    let run = monitor(&dir, &cgroup, &[walker, "anon", "32", "2"]);
    let summary = &run["summary"];
    assert_eq!(summary["worst_state"], "ok");
    assert_eq!(ms_in(summary, 0), num(summary, "duration_ms"));
    assert_eq!(num(summary, "peak_swap_kib"), 0);
    assert_eq!(num(summary, "majflt"), 0);
    assert_eq!(num(summary, "limit_hits"), 0);
    assert!(num(summary, "peak_rss_kib") >= 32 * 1024);
    drop(cgroup);
    drop(swap);
}

#[test]
fn file_backed_working_set_without_swap_thrashes_on_page_cache_refaults() {
    if skip_if_needed("file_backed_working_set_without_swap_thrashes") {
        return;
    }
    let _lock = SYSTEM.lock().unwrap_or_else(|e| e.into_inner());
    let dir = scratch("swap-file");
    let walker = walker(&dir);
    let walker = walker.to_str().unwrap();
    let data = dir.join("working-set");
    let data = data.to_str().unwrap();
    // Make the 256 MiB file outside the cgroup (0 seconds: prepare only).
    let made = Command::new(walker)
        .args(["file", "256", "0", data])
        .status()
        .unwrap();
    assert!(made.success());

    let cgroup = CgroupGuard::new("file", false);
    let pswpout = vmstat("pswpout");
    let run = monitor(&dir, &cgroup, &[walker, "file", "256", "4", data]);
    let summary = &run["summary"];
    eprintln!("{summary}");
    assert_eq!(summary["worst_state"], "thrashing");
    assert!(ms_in(summary, 3) >= 1000, "thrashed for at least 1 s");
    assert_eq!(num(summary, "peak_swap_kib"), 0);
    // Every pass after the first reads back what the one before evicted:
    // the cgroup's refaults are what memtrace counted.
    let refaults = num(summary, "refaults");
    assert!(
        refaults >= 65536,
        "at least one pass of refaults: {refaults}"
    );
    assert_close(
        refaults,
        cgroup.stat("workingset_refault_file") + cgroup.stat("workingset_refault_anon"),
    );
    assert_eq!(vmstat("pswpout"), pswpout, "nothing went to swap");
    let _ = std::fs::remove_file(data);
}
