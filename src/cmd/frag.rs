//! `memtrace frag`: the program's requests replayed through allocator
//! models (`TRACE`), or the kernel's buddy and slab state (`--system`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::builder::PossibleValue;
use clap::{ArgGroup, Args, ValueEnum};
use memtrace_analyze::heapmap::{HeapMap, RealHeap};
use memtrace_analyze::receipts::ReceiptOrder;
use memtrace_analyze::requests::Requests;
use memtrace_analyze::sink::Trace;
use memtrace_analyze::symbols::Symbols;
use memtrace_analyze::units::count;
use memtrace_format::{Named, StackTable};
use memtrace_frag::system::{self, BuddyZone, SlabCache};
use memtrace_frag::{best_policy, Config, PolicyKind, PolicyReport, StreamReplay};

use crate::cmd::extent::FollowArg;
use crate::cmd::list::Item;
use crate::cmd::report::Format;
use crate::progress::{self, QuietArg};

/// The schema of the JSON of a trace's fragmentation.
pub const SCHEMA: &str = "memtrace-frag/2";

/// The schema of the JSON of `--system`.
pub const SYSTEM_SCHEMA: &str = "memtrace-frag-system/1";

/// An allocator model to replay on the command line, or `none`: the
/// models and their names are `memtrace_frag`'s own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PolicyArg(Option<PolicyKind>);

/// Every model, then `none`.
const POLICY_ARGS: [PolicyArg; PolicyKind::ALL.len() + 1] = {
    let mut all = [PolicyArg(None); PolicyKind::ALL.len() + 1];
    let mut i = 0;
    while i < PolicyKind::ALL.len() {
        all[i] = PolicyArg(Some(PolicyKind::ALL[i]));
        i += 1;
    }
    all
};

impl ValueEnum for PolicyArg {
    fn value_variants<'a>() -> &'a [Self] {
        &POLICY_ARGS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self.0 {
            Some(kind) => PossibleValue::new(kind.name()),
            None => PossibleValue::new("none").help("no model: the real heap only"),
        })
    }
}

/// Arguments of `memtrace frag`.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("input").args(["trace", "system"]).required(true)))]
pub struct FragArgs {
    /// The trace whose requests are replayed.
    pub trace: Option<PathBuf>,
    /// Allocator models to replay, comma-separated; default all.
    #[arg(long, value_name = "POLICIES", value_delimiter = ',', value_parser = Item::<PolicyArg>::new())]
    pub simulate: Vec<PolicyArg>,
    /// Leave out the real heap (one pass over the trace instead of two).
    #[arg(long)]
    pub no_real_heap: bool,
    /// Heap growth granule of the models, bytes.
    #[arg(long, default_value_t = 4096)]
    pub page_size: u64,
    /// Block alignment of the free-list models, bytes.
    #[arg(long, default_value_t = 16)]
    pub align: u64,
    /// Smallest buddy block is 2^ORDER bytes.
    #[arg(long, default_value_t = 4)]
    pub min_order: u32,
    /// The kernel's view instead: /proc/buddyinfo and /proc/slabinfo.
    #[arg(long)]
    pub system: bool,
    /// A captured buddyinfo file (with --system).
    #[arg(long, value_name = "FILE", conflicts_with = "trace")]
    pub buddyinfo: Option<PathBuf>,
    /// A captured slabinfo file (with --system).
    #[arg(long, value_name = "FILE", conflicts_with = "trace")]
    pub slabinfo: Option<PathBuf>,
    /// Output format (JSON schema `memtrace-frag/2`, with --system
    /// `memtrace-frag-system/1`).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How much of a trace still being written to read.
    #[command(flatten)]
    pub follow: FollowArg,
    /// Whether reading shows progress.
    #[command(flatten)]
    pub quiet: QuietArg,
}

/// Runs `memtrace frag`.
pub fn frag(args: FragArgs) -> Result<ExitCode> {
    if args.system {
        return system_view(&args);
    }
    let Some(trace) = &args.trace else {
        unreachable!("clap requires TRACE or --system");
    };
    let policies = policies(&args.simulate);
    let config = Config {
        page_size: args.page_size,
        align: args.align,
        buddy_min_order: args.min_order,
        ..Config::default()
    };
    let context = || format!("{}", trace.display());
    // One pass feeds every policy (each on its own thread) and the real
    // heap, in the order the calls ended (a moving realloc's new block
    // arrives when the call ends, for both).
    let mut reader =
        progress::open(trace, args.follow.extent(), Named::ByUser).with_context(context)?;
    let mut replay = StreamReplay::new(&policies, &config);
    let mut requests = Requests::new();
    let mut real_heap = (!args.no_real_heap).then(RealHeap::new);
    let mut order = ReceiptOrder::new();
    while let Some(event) = order.next(&mut reader).with_context(context)? {
        if !policies.is_empty() {
            requests.feed(&event, |r| replay.push(r));
        }
        if let Some(real_heap) = &mut real_heap {
            real_heap.feed(&event, reader.header().page_size);
        }
    }
    let n_requests = replay.len();
    let heap = real_heap.map(|h| h.finish_map(&Trace::of(&reader)));
    let reports: Vec<PolicyReport> = replay.finish();
    let best = best_policy(&reports);
    match args.format {
        Format::Json => {
            let out = trace_json(heap.as_ref(), n_requests, &reports, best.as_ref());
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Text => {
            let mut symbols = Symbols::new(reader.modules());
            if let Some(heap) = &heap {
                print!("{}", real_heap_text(heap, &mut symbols, reader.stacks()));
            }
            if !policies.is_empty() {
                print!("{}", policy_table(&reports, best, n_requests));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The JSON of a trace's fragmentation (schema [`SCHEMA`]): the real heap
/// (`None` with `--no-real-heap`), the number of requests replayed, each
/// policy's report and the best policy. `memtrace plot --data` writes it too.
pub fn trace_json(
    heap: Option<&HeapMap>,
    n_requests: u64,
    reports: &[PolicyReport],
    best: Option<&(PolicyKind, String)>,
) -> serde_json::Value {
    let best = best.map(|(p, why)| serde_json::json!({"policy": p.name(), "why": why}));
    serde_json::json!({
        "schema": SCHEMA,
        "real_heap": heap,
        "requests": n_requests,
        "policies": reports,
        "best": best,
    })
}

fn real_heap_text(heap: &HeapMap, symbols: &mut Symbols, stacks: &StackTable) -> String {
    let mut out = String::new();
    if !heap.measured {
        let _ = writeln!(
            out,
            "real heap: not measured (the trace has no [heap] snapshot)\n"
        );
        return out;
    }
    let _ = writeln!(out, "real heap (glibc main arena, [heap]):");
    let _ = writeln!(
        out,
        "  {:<8} {:>10} {:>10} {:>10} {:>6} {:>10} {:>8} {:>10} {:>14}",
        "",
        "live B",
        "extent B",
        "holes B",
        "holes",
        "largest B",
        "ext frag",
        "top free B",
        "stranded holes"
    );
    for (name, p, stranded) in [
        ("at peak", &heap.at_peak, heap.stranded_at_peak),
        ("at end", &heap.at_end, heap.stranded_at_end),
    ] {
        let _ = writeln!(
            out,
            "  {:<8} {:>10} {:>10} {:>10} {:>6} {:>10} {:>8.3} {:>10} {:>6} ({} B)",
            name,
            p.live_bytes,
            p.extent_bytes,
            p.free_in_holes,
            p.n_holes,
            p.largest_hole,
            p.external,
            p.top_free,
            stranded.holes,
            stranded.bytes
        );
    }
    let _ = writeln!(
        out,
        "  stranded holes: holes smaller than the chunk glibc would carve for each request made \
         after they got their size, to the end of the trace (the policies below count theirs by the same rule)"
    );
    for (name, p) in [("at peak", &heap.at_peak), ("at end", &heap.at_end)] {
        let _ = writeln!(
            out,
            "  outside [heap] {name}: {} ({} B requested in {} B of pages, no holes); \
             {} / {} B in the allocator's other mappings (other threads' arenas) or another allocator's, not mapped",
            count(p.mmapped_blocks, "mmap'd block"),
            p.mmapped_bytes,
            p.mmapped_mapped_bytes,
            count(p.unmapped_blocks, "block"),
            p.unmapped_bytes
        );
    }
    for (name, p, by_size, by_site) in [
        (
            "at peak",
            &heap.at_peak,
            &heap.internal_by_size_at_peak,
            &heap.internal_by_site_at_peak,
        ),
        (
            "at end",
            &heap.at_end,
            &heap.internal_by_size_at_end,
            &heap.internal_by_site_at_end,
        ),
    ] {
        let _ = writeln!(
            out,
            "  internal fragmentation {name}: {} B usable but not requested ({:.3} of the live blocks' usable bytes)",
            p.internal_bytes, p.internal
        );
        for r in by_size.iter().filter(|r| r.internal_bytes > 0) {
            let _ = writeln!(
                out,
                "    requests of {}-{} B: {}, {} B requested, {} B internal ({:.3})",
                r.size_from.unwrap_or(0),
                r.size_to.unwrap_or(0),
                count(r.blocks, "block"),
                r.requested_bytes,
                r.internal_bytes,
                r.internal
            );
        }
        for r in by_site.iter().filter(|r| r.internal_bytes > 0).take(5) {
            let site = symbols.site(stacks, r.stack.unwrap_or(0));
            let _ = writeln!(
                out,
                "    {}, {} B internal ({:.3}) at {}",
                count(r.blocks, "block"),
                r.internal_bytes,
                r.internal,
                site.describe()
            );
        }
    }
    for (when, pinning) in [
        ("at the peak", &heap.pinning_at_peak),
        ("at the end", &heap.pinning_at_end),
    ] {
        if pinning.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  blocks pinning large holes {when}:");
        for p in pinning.iter().take(5) {
            let site = symbols.site(stacks, p.stack);
            let _ = writeln!(
                out,
                "    {} next to {} at {}",
                count(p.blocks, "block"),
                count(p.hole_bytes, "free byte"),
                site.describe()
            );
        }
    }
    let _ = writeln!(out);
    out
}

/// The models `--simulate` names, in its order: every one without it.
fn policies(list: &[PolicyArg]) -> Vec<PolicyKind> {
    if list.is_empty() {
        return PolicyKind::ALL.to_vec();
    }
    list.iter().filter_map(|p| p.0).collect()
}

fn policy_table(reports: &[PolicyReport], best: Option<(PolicyKind, String)>, n: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} replayed\n", count(n, "request"));
    let _ = writeln!(
        out,
        "{:<10} {:>13} {:>10} {:>12} {:>11} {:>9} {:>9} {:>8} {:>9} {:>15}",
        "policy",
        "max footprint",
        "live@peak",
        "footprint@pk",
        "internal@pk",
        "ext@peak",
        "ext avg",
        "growths",
        "examined",
        "stranded@end"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<10} {:>13} {:>10} {:>12} {:>11} {:>9.3} {:>9.3} {:>8} {:>9.2} {:>8} ({} B)",
            r.policy.name(),
            r.peak_footprint,
            r.peak_live,
            r.footprint_at_peak,
            r.internal_at_peak,
            r.external_at_peak,
            r.external_avg,
            r.n_growths,
            r.examined_avg,
            r.n_stranded_holes,
            r.stranded_bytes
        );
    }
    let _ = writeln!(
        out,
        "@peak: at the live peak, the first request after which the most bytes are live \
         (the same request for every policy); max footprint: the largest at any moment; \
         stranded@end: holes at the end, as for the real heap"
    );
    if let Some((policy, why)) = best {
        let _ = writeln!(
            out,
            "\nbest policy for this program: {}: {why}",
            policy.name()
        );
    }
    out
}

fn system_view(args: &FragArgs) -> Result<ExitCode> {
    let buddy_path = args
        .buddyinfo
        .clone()
        .unwrap_or_else(|| "/proc/buddyinfo".into());
    let slab_path = args
        .slabinfo
        .clone()
        .unwrap_or_else(|| "/proc/slabinfo".into());
    let zones = system::read_buddyinfo(&buddy_path)
        .with_context(|| format!("cannot read {}", buddy_path.display()))?;
    // slabinfo is root-only on most systems: say so instead of failing.
    let slabs = match system::read_slabinfo(&slab_path) {
        Ok(s) => Ok(s),
        Err(e) => Err(format!("{}: {e}", slab_path.display())),
    };
    match args.format {
        Format::Json => {
            let zones_json: Vec<serde_json::Value> = zones.iter().map(zone_json).collect();
            let out = serde_json::json!({
                "schema": SYSTEM_SCHEMA,
                "buddyinfo": display(&buddy_path),
                "zones": zones_json,
                "slab_caches": slabs.as_ref().ok().map(|s| system::rank_by_waste(s)),
                "slabinfo_error": slabs.as_ref().err(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Text => print!("{}", system_text(&zones, &slabs)),
    }
    Ok(ExitCode::SUCCESS)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

fn zone_json(z: &BuddyZone) -> serde_json::Value {
    let orders: Vec<serde_json::Value> = (0..z.free.len() as u32)
        .map(|o| {
            serde_json::json!({
                "order": o,
                "free_blocks": z.free[o as usize],
                "unusable_index": system::format_index(z.unusable_index(o)),
                "fragmentation_index": system::format_index(z.fragmentation_index(o)),
            })
        })
        .collect();
    serde_json::json!({"node": z.node, "zone": z.zone, "free_pages": z.free_pages(), "orders": orders})
}

/// What the two index columns mean, printed under the zones: the values are
/// the kernel's own (`/sys/kernel/debug/extfrag/`), -1.000 included, so that
/// they compare with its files digit for digit.
const INDEX_LEGEND: &str = "\
unusable: share of the free pages in blocks smaller than the order (the kernel's extfrag/unusable_index)
fragmentation: the kernel's extfrag/extfrag_index:
  -1.000  a free block of the order exists: the allocation would succeed
  0 to 1  it would fail: towards 0.000 for lack of free memory, towards 1.000 for fragmentation
          (below 0 with very few free blocks, printed 0.-NNN as the kernel prints it)
";

fn system_text(zones: &[BuddyZone], slabs: &Result<Vec<SlabCache>, String>) -> String {
    let mut out = String::new();
    for z in zones {
        let _ = writeln!(
            out,
            "node {} zone {}: {} free pages",
            z.node,
            z.zone,
            z.free_pages()
        );
        let _ = writeln!(out, "  order  free blocks  unusable  fragmentation");
        for o in 0..z.free.len() as u32 {
            let _ = writeln!(
                out,
                "  {o:>5}  {:>11}  {:>8}  {:>13}",
                z.free[o as usize],
                system::format_index(z.unusable_index(o)),
                system::format_index(z.fragmentation_index(o))
            );
        }
    }
    if !zones.is_empty() {
        out.push_str(INDEX_LEGEND);
    }
    match slabs {
        Ok(caches) => {
            let _ = writeln!(
                out,
                "\nslab caches by wasted bytes ((total - active objects) x size):"
            );
            let _ = writeln!(
                out,
                "  {:<28} {:>12} {:>10} {:>10} {:>8} {:>6}",
                "cache", "wasted B", "active", "total", "objsize", "obj/slab"
            );
            for c in system::rank_by_waste(caches).into_iter().take(15) {
                let _ = writeln!(
                    out,
                    "  {:<28} {:>12} {:>10} {:>10} {:>8} {:>6}",
                    c.name,
                    c.wasted_bytes(),
                    c.active_objs,
                    c.num_objs,
                    c.objsize,
                    c.objperslab
                );
            }
        }
        Err(e) => {
            let _ = writeln!(out, "\nslab caches: skipped: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_is_named_as_the_frag_crate_names_it() {
        for kind in PolicyKind::ALL {
            let arg = PolicyArg::from_str(kind.name(), false).expect("a value");
            assert_eq!(arg, PolicyArg(Some(kind)));
        }
        assert_eq!(PolicyArg::from_str("none", false), Ok(PolicyArg(None)));
        assert_eq!(PolicyArg::value_variants().len(), PolicyKind::ALL.len() + 1);
    }

    #[test]
    fn no_list_is_every_model_and_none_adds_none() {
        assert_eq!(policies(&[]), PolicyKind::ALL);
        assert_eq!(policies(&[PolicyArg(None)]), []);
        let buddy = PolicyArg(Some(PolicyKind::Buddy));
        assert_eq!(policies(&[PolicyArg(None), buddy]), [PolicyKind::Buddy]);
    }
}
