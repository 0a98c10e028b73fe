//! `memtrace frag`: the policy replay of a real program's trace is
//! consistent, and the system view prints the kernel's indices.

mod common;
use common::*;

#[test]
fn replaying_python3_gives_a_consistent_table() {
    let dir = scratch("frag");
    let out = record(
        &dir,
        "py.trace",
        &[
            "python3",
            "-c",
            "print(sum(len(str(i)) for i in range(30000)))",
        ],
    );
    assert!(out.status.success());
    let report = report_json(&dir.join("py.trace"));
    let frag = memtrace_json(
        &dir,
        &["frag", "--format", "json", "--align", "1", "py.trace"],
    );
    let policies = frag["policies"].as_array().unwrap();
    assert_eq!(policies.len(), 8);
    for p in policies {
        let name = p["policy"].as_str().unwrap();
        // The replay sees the same live heap as the report.
        assert_eq!(
            num(p, "peak_live"),
            num(&report["totals"], "peak_bytes"),
            "{name}"
        );
        assert!(num(p, "peak_footprint") >= num(p, "peak_live"), "{name}");
        if [
            "FirstFit",
            "NextFit",
            "BestFit",
            "WorstFit",
            "Compact",
            "Semispace",
        ]
        .contains(&name)
        {
            // Byte-exact blocks: nothing is wasted inside them.
            assert_eq!(num(p, "internal_at_peak"), 0, "{name}");
        }
    }
    let compact = policies.iter().find(|p| p["policy"] == "Compact").unwrap();
    let semispace = policies
        .iter()
        .find(|p| p["policy"] == "Semispace")
        .unwrap();
    assert_eq!(
        num(semispace, "peak_footprint"),
        2 * num(compact, "peak_footprint")
    );
    assert!(frag["best"]["why"]
        .as_str()
        .unwrap()
        .contains("lowest peak footprint"));
}

#[test]
fn the_system_view_reads_captured_files() {
    let data = root().join("crates/frag/tests/data");
    let buddyinfo = data.join("buddyinfo.small");
    let slabinfo = data.join("slabinfo.small");
    let args = [
        "frag",
        "--system",
        "--buddyinfo",
        buddyinfo.to_str().unwrap(),
        "--slabinfo",
        slabinfo.to_str().unwrap(),
    ];
    let text = memtrace_stdout(std::path::Path::new("."), &args);
    // 4, 2, 1, 0 free blocks of orders 0-3: 12 free pages; indices by hand in
    // crates/frag/tests/system.rs. -1.000 is explained under the zones.
    let expected = "\
node 0 zone Normal: 12 free pages
  order  free blocks  unusable  fragmentation
      0            4     0.000         -1.000
      1            2     0.333         -1.000
      2            1     0.666         -1.000
      3            0     1.000          0.643
node 0 zone Empty: 0 free pages
  order  free blocks  unusable  fragmentation
      0            0     1.000          0.000
      1            0     1.000          0.000
node 1 zone DMA: 1 free pages
  order  free blocks  unusable  fragmentation
      0            1     0.000         -1.000
      1            0     1.000         0.-500
unusable: share of the free pages in blocks smaller than the order (the kernel's extfrag/unusable_index)
fragmentation: the kernel's extfrag/extfrag_index:
  -1.000  a free block of the order exists: the allocation would succeed
  0 to 1  it would fail: towards 0.000 for lack of free memory, towards 1.000 for fragmentation
          (below 0 with very few free blocks, printed 0.-NNN as the kernel prints it)

slab caches by wasted bytes ((total - active objects) x size):
  cache                            wasted B     active      total  objsize obj/slab
  dentry                              13632       1000       1071      192     21
  kmalloc-96                           1920        400        420       96     42
  kmalloc-2k                              0         16         16     2048     16
";
    assert_eq!(text, expected);
}

#[test]
fn unknown_policies_and_missing_traces_are_one_line_errors() {
    let dir = scratch("frag-errors");
    let out = memtrace()
        .current_dir(&dir)
        .args(["frag", "--simulate", "bogus", "x.trace"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1);
    assert!(
        stderr.starts_with("memtrace: invalid value 'bogus' for '--simulate <POLICIES>'"),
        "{stderr}"
    );
    let out = memtrace()
        .current_dir(&dir)
        .args(["frag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `memtrace frag --format json` on `frag_pattern MODE 100`.
fn frag_of_pattern(mode: &str) -> serde_json::Value {
    let dir = scratch(&format!("frag-{mode}"));
    let exe = compile("cc", "fixtures/c/frag_pattern.c", &["-O0", "-g"], &dir);
    let out = record(&dir, "f.trace", &[exe.to_str().unwrap(), mode, "100"]);
    assert!(out.status.success());
    memtrace_json(&dir, &["frag", "--format", "json", "f.trace"])
}

/// The real heap of `frag_pattern MODE 100`, as `memtrace frag --format json` reports it.
fn real_heap(mode: &str) -> serde_json::Value {
    frag_of_pattern(mode)["real_heap"].clone()
}

/// `(holes, bytes)` of a `Stranded` object.
fn stranded(s: &serde_json::Value) -> (u64, u64) {
    (num(s, "holes"), num(s, "bytes"))
}

#[test]
fn stranded_holes_follow_one_rule_in_the_real_heap_and_the_models() {
    // 99 holes of 4016 bytes below the top, then 100 requests of 5000
    // bytes (5008-byte chunks): none fits, all 99 are stranded, at the peak
    // (the last request) and at the end, in glibc's heap ...
    let frag = frag_of_pattern("stranded");
    let heap = &frag["real_heap"];
    assert_eq!(stranded(&heap["stranded_at_end"]), (99, 99 * 4016));
    assert_eq!(stranded(&heap["stranded_at_peak"]), (99, 99 * 4016));
    // ... and in every free-list model, with its own 4000-byte blocks.
    for p in frag["policies"].as_array().unwrap() {
        let name = p["policy"].as_str().unwrap();
        if ["FirstFit", "NextFit", "BestFit", "WorstFit"].contains(&name) {
            assert_eq!(
                (num(p, "n_stranded_holes"), num(p, "stranded_bytes")),
                (99, 99 * 4000),
                "{name}"
            );
        }
    }
    // The same holes with no request after them are not judged, by either.
    let frag = frag_of_pattern("interleaved");
    assert_eq!(stranded(&frag["real_heap"]["stranded_at_end"]), (0, 0));
    for p in frag["policies"].as_array().unwrap() {
        assert_eq!(num(p, "n_stranded_holes"), 0, "{}", p["policy"]);
    }
}

/// Bytes in holes of at least `min` bytes, from `holes_at_end`.
fn bytes_in_holes_of_at_least(heap: &serde_json::Value, min: u64) -> u64 {
    heap["holes_at_end"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h[0].as_u64().unwrap(), h[1].as_u64().unwrap()))
        .filter(|&(size, _)| size >= min)
        .map(|(size, n)| size * n)
        .sum()
}

#[test]
fn the_real_heap_tells_a_fragmenting_pattern_from_one_that_is_not() {
    // 100 x (malloc(32), malloc(4000)), then the 4000-byte blocks freed: each
    // leaves a 4016-byte chunk between two live 32-byte blocks, 99 of them
    // below the last live block (a few adjacent ones coalesce when a 32-byte
    // request reuses a chunk freed at start-up: the bytes stay 99 x 4016).
    let interleaved = real_heap("interleaved");
    assert_eq!(interleaved["measured"], true);
    assert_eq!(bytes_in_holes_of_at_least(&interleaved, 4016), 99 * 4016);
    let end = &interleaved["at_end"];
    assert_eq!(num(end, "live_bytes"), 100 * 32);
    assert!(end["external"].as_f64().unwrap() > 0.9, "{end}");
    let pins = interleaved["pinning_at_end"].as_array().unwrap();
    assert!(num(&pins[0], "blocks") >= 90, "{pins:?}");

    // The same requests grouped: the freed blocks coalesce; nothing is pinned.
    let grouped = real_heap("grouped");
    assert_eq!(bytes_in_holes_of_at_least(&grouped, 4016), 0);
    assert_eq!(num(&grouped["at_end"], "live_bytes"), 100 * 32);
    assert_eq!(grouped["pinning_at_end"].as_array().unwrap().len(), 0);
    // At the peak everything is live in both: the same live bytes.
    assert_eq!(
        num(&interleaved["at_peak"], "live_bytes"),
        100 * (32 + 4000)
    );
    assert_eq!(num(&grouped["at_peak"], "live_bytes"), 100 * 4000);

    // Grouped, glibc grows the heap to hold the 100 large blocks and trims
    // it when they are freed, between two snapshots: the heap is taken to
    // have grown as far as its blocks reach, so all 100 lie in it and none
    // is "elsewhere".
    let peak = &grouped["at_peak"];
    assert_eq!(num(peak, "blocks_in_heap"), 100);
    assert_eq!(
        (num(peak, "unmapped_blocks"), num(peak, "unmapped_bytes")),
        (0, 0)
    );
    assert!(num(peak, "extent_bytes") >= 100 * 4000, "{peak}");

    // Internal fragmentation: glibc gives a 32-byte request 40 usable
    // bytes and a 4000-byte one 4008: 8 bytes each, exactly.
    for (heap, at, blocks) in [
        (&interleaved, "at_peak", 200),
        (&interleaved, "at_end", 100),
        (&grouped, "at_peak", 100),
        (&grouped, "at_end", 100),
    ] {
        assert_eq!(num(&heap[at], "internal_bytes"), 8 * blocks, "{at}");
    }
    assert_eq!(
        interleaved["at_end"]["internal"].as_f64().unwrap(),
        8.0 / 40.0
    );
    let by_size = interleaved["internal_by_size_at_peak"].as_array().unwrap();
    let rows: Vec<(u64, u64, u64, u64)> = by_size
        .iter()
        .map(|r| {
            (
                num(r, "size_from"),
                num(r, "blocks"),
                num(r, "requested_bytes"),
                num(r, "internal_bytes"),
            )
        })
        .collect();
    assert_eq!(rows, [(32, 100, 3200, 800), (2048, 100, 400_000, 800)]);
    let sites = interleaved["internal_by_site_at_end"].as_array().unwrap();
    assert_eq!(sites.len(), 1, "only the small blocks are live: {sites:?}");
    assert_eq!(
        (num(&sites[0], "blocks"), num(&sites[0], "internal_bytes")),
        (100, 800)
    );

    // Pinning blocks share holes: each free byte counts once among them.
    let pinned: u64 = pins.iter().map(|p| num(p, "hole_bytes")).sum();
    assert!(
        pinned <= bytes_in_holes_of_at_least(&interleaved, 1024),
        "{pinned} B pinned, more than the holes hold"
    );
}
