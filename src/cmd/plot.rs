//! `memtrace plot TRACE [-o DIR] [--only CHART,...]`: a trace's charts as
//! SVG files, with an `index.html` that shows them.
//!
//! The charts are the ones `cargo xtask report` draws for the fixtures:
//! `heap.svg` (live heap over time, peak marked), `sizes.svg`,
//! `latency.svg`, `frag.svg` (the real heap's holes over time),
//! `policies.svg` (the allocator policy replay) and `flame.svg` (inferno,
//! by bytes allocated). A chart whose data the trace lacks (no latencies,
//! no `[heap]` snapshot) is drawn as a placeholder that says why, never left
//! out. The data are those of `memtrace report`, `latency` and `frag` with
//! their default options; see [`crate::charts`]. With `--data DIR` it also
//! writes what those commands print, from the same reading of the trace, so
//! that `cargo xtask report` reads each fixture's trace once instead of
//! once per command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::io::Read;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use memtrace_analyze::flame::{self, Folded, Measure};
use memtrace_analyze::heapmap::{HeapMap, RealHeap};
use memtrace_analyze::latency::{self, LatencyReport, LatencySink};
use memtrace_analyze::leaks::{LeakError, LeakReport};
use memtrace_analyze::replay::HeapReplay;
use memtrace_analyze::report::{self, Report, TextOptions};
use memtrace_analyze::requests::RequestSink;
use memtrace_analyze::sink::{drive, EventSink, InReceiptOrder, Trace};
use memtrace_format::{DecodeError, Named, Reader};
use memtrace_frag::{best_policy, PolicyKind, PolicyReport, StreamReplay};
use memtrace_leaks::Suppressions;
use memtrace_plot::page::{self, Figure, Page, Section};

use crate::charts;
use crate::cmd::extent::FollowArg;
use crate::cmd::flamegraph;
use crate::cmd::frag;
use crate::cmd::list::Item;
use crate::progress::{self, QuietArg};

/// One chart `memtrace plot` can draw.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Chart {
    /// Live heap over time with the peak, and heap calls per ms.
    Heap,
    /// Allocation size histogram.
    Sizes,
    /// Allocator latency histogram per function (log scale).
    Latency,
    /// Real-heap fragmentation over time.
    Frag,
    /// Allocator policies replayed: footprint and fragmentation.
    Policies,
    /// Flame graph of bytes allocated per stack.
    Flame,
    /// Leaks by class at exit (the leak scan).
    Leaks,
}

impl Chart {
    /// Every chart, in the order of the page.
    pub const ALL: [Chart; 7] = [
        Chart::Heap,
        Chart::Sizes,
        Chart::Latency,
        Chart::Frag,
        Chart::Policies,
        Chart::Flame,
        Chart::Leaks,
    ];

    /// The chart's name on the command line and its file stem.
    pub fn name(self) -> &'static str {
        match self {
            Chart::Heap => "heap",
            Chart::Sizes => "sizes",
            Chart::Latency => "latency",
            Chart::Frag => "frag",
            Chart::Policies => "policies",
            Chart::Flame => "flame",
            Chart::Leaks => "leaks",
        }
    }

    /// Heading on the page.
    pub fn title(self) -> &'static str {
        match self {
            Chart::Heap => "Live heap over time",
            Chart::Sizes => "Allocation sizes",
            Chart::Latency => "Time inside the allocator",
            Chart::Frag => "Real-heap fragmentation over the run",
            Chart::Policies => "Allocator policies replayed",
            Chart::Flame => "Flame graph of bytes allocated",
            Chart::Leaks => "Leaks by class",
        }
    }

    /// What the chart shows, for the page.
    pub fn caption(self) -> &'static str {
        match self {
            Chart::Heap => {
                "Bytes live on the heap as the program ran, with the peak marked, and heap \
                 calls per millisecond below: where the heap grows and how busy the \
                 allocator is (the numbers of memtrace report)."
            }
            Chart::Sizes => {
                "How many allocations requested each size, in power-of-two buckets \
                 (memtrace report's size histogram)."
            }
            Chart::Latency => {
                "How long each allocator call took, per function, in power-of-two buckets of \
                 time; counts on a log scale so that rare slow calls (stalls) show \
                 (memtrace latency)."
            }
            Chart::Frag => {
                "glibc's main heap rebuilt from the trace, call by call: its extent, the live \
                 bytes, the free bytes in holes between live blocks and above the last one, and \
                 external fragmentation (1 - largest hole / free in holes) (memtrace frag)."
            }
            Chart::Policies => {
                "The program's own requests replayed through allocator models: peak footprint \
                 against live bytes, and internal and external fragmentation at the footprint \
                 peak, per policy (memtrace frag --simulate)."
            }
            Chart::Flame => {
                "Allocation stacks, each as wide as the bytes it allocated; hover for exact \
                 numbers (memtrace flamegraph --by bytes)."
            }
            Chart::Leaks => {
                "Blocks unfreed at exit by reachability class (definitely, indirectly, \
                 possibly lost, still reachable): bytes and blocks per class, after the \
                 built-in suppressions (memtrace leaks)."
            }
        }
    }
}

/// Arguments of `memtrace plot`.
#[derive(Args, Debug)]
pub struct PlotArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Directory for the SVG files and index.html (created; files in it are
    /// replaced); default: the trace's path with `.charts` for `.trace`.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Draw only these charts, comma-separated; default all.
    #[arg(long, value_name = "CHARTS", value_delimiter = ',', value_parser = Item::<Chart>::new())]
    pub only: Vec<Chart>,
    /// Also write, from the same reading of the trace, into DIR (created;
    /// files in it are replaced): NAME.txt, NAME.json, NAME.latency.json and
    /// NAME.frag.json, byte for byte what `memtrace report`, `report --format
    /// json`, `latency --format json` and `frag --format json` print with
    /// their default options; NAME is the trace's file name without its
    /// extension.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// How much of a trace still being written to read.
    #[command(flatten)]
    pub follow: FollowArg,
    /// Whether reading shows progress.
    #[command(flatten)]
    pub quiet: QuietArg,
}

/// The default output directory: `x.trace` -> `x.charts`.
fn default_dir(trace: &Path) -> PathBuf {
    trace.with_extension("charts")
}

/// The policy replay: one report per policy, the best policy with why, and
/// the number of requests replayed.
struct Replayed {
    reports: Vec<PolicyReport>,
    best: Option<(PolicyKind, String)>,
    n_requests: u64,
}

/// The analyses behind the charts asked for (the report always: it names
/// the program).
struct Data {
    report: Report,
    latency: Option<LatencyReport>,
    heap: Option<HeapMap>,
    policies: Option<Replayed>,
    leaks: Option<Result<LeakReport, LeakError>>,
    flame: Option<Folded>,
}

/// Which analyses one reading of the trace runs, besides the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Needs {
    latency: bool,
    policies: bool,
    real_heap: bool,
    leaks: bool,
    flame: bool,
}

impl Needs {
    /// What `charts` are drawn from, and with `data` what `--data` writes
    /// (the latency, the policies and the real heap).
    fn of(charts: &[Chart], data: bool) -> Needs {
        let want = |chart| charts.contains(&chart);
        Needs {
            latency: data || want(Chart::Latency),
            policies: data || want(Chart::Policies),
            real_heap: data || want(Chart::Frag),
            leaks: want(Chart::Leaks),
            flame: want(Chart::Flame),
        }
    }
}

/// Runs the analyses of `needs` over one decode of `reader`'s trace.
fn gather<R: Read>(needs: Needs, mut reader: Reader<R>) -> Result<Data, DecodeError> {
    let mut replay = HeapReplay::new(report::TIMELINE_POINTS);
    let mut latency = needs
        .latency
        .then(|| LatencySink::new(latency::Config::default()));
    let mut policies = needs
        .policies
        .then(|| StreamReplay::new(&PolicyKind::ALL, &memtrace_frag::Config::default()));
    let mut real_heap = needs.real_heap.then(RealHeap::new);
    {
        let mut requests = policies
            .as_mut()
            .map(|p| RequestSink::new(move |r| p.push(r)));
        let mut ordered: Vec<&mut dyn EventSink> = Vec::new();
        if let Some(r) = &mut requests {
            ordered.push(r);
        }
        if let Some(h) = &mut real_heap {
            ordered.push(h);
        }
        let mut ordered = (!ordered.is_empty()).then(|| InReceiptOrder::new(ordered));
        let mut sinks: Vec<&mut dyn EventSink> = vec![&mut replay];
        if let Some(l) = &mut latency {
            sinks.push(l);
        }
        if let Some(o) = &mut ordered {
            sinks.push(o);
        }
        drive(&mut reader, &mut sinks)?;
    }
    let trace = Trace::of(&reader);
    let flame = needs
        .flame
        .then(|| flame::from_replay(&replay, &trace, Measure::Bytes));
    let leaks = needs
        .leaks
        .then(|| memtrace_analyze::leaks::from_trace(&trace, &Suppressions::builtin()));
    let policies = policies.map(|p| {
        let n_requests = p.len();
        let reports = p.finish();
        let best = best_policy(&reports);
        Replayed {
            reports,
            best,
            n_requests,
        }
    });
    let data = Data {
        report: report::from_replay(&replay, &trace),
        latency: latency.map(|l| l.report(&trace)),
        heap: real_heap.map(|h| h.finish_map(&trace)),
        policies,
        leaks,
        flame,
    };
    Ok(data)
}

/// Draws one chart (or its placeholder) as SVG text from `data`, which
/// [`gather`] filled for it.
fn draw(chart: Chart, data: &Data) -> Result<String> {
    let skipped = |reason: &str| Ok(memtrace_plot::skipped(chart.title(), reason)?);
    let program = charts::program_name(&data.report.program.exe);
    let missing = || anyhow::anyhow!("no data gathered for the {} chart", chart.name());
    match chart {
        Chart::Heap => Ok(memtrace_plot::timeline(&charts::heap_timeline(
            &data.report,
        ))?),
        Chart::Sizes => match charts::size_histogram(&data.report) {
            Some(h) => Ok(memtrace_plot::histogram(&h)?),
            None => skipped("the trace has no allocation"),
        },
        Chart::Latency => {
            let r = data.latency.as_ref().ok_or_else(missing)?;
            match charts::latency_histogram(r) {
                Some(h) => Ok(memtrace_plot::histogram(&h)?),
                None => skipped("the trace has no allocator latencies (MEMTRACE_TIMING=0)"),
            }
        }
        Chart::Frag => {
            let heap = data.heap.as_ref().ok_or_else(missing)?;
            match charts::real_heap_timeline(heap, &program) {
                Some(t) => Ok(memtrace_plot::timeline(&t)?),
                None => skipped("the trace has no [heap] snapshot to rebuild the heap from"),
            }
        }
        Chart::Policies => {
            let p = data.policies.as_ref().ok_or_else(missing)?;
            match charts::policy_chart(&p.reports, p.best.as_ref(), &program) {
                Some(c) => Ok(memtrace_plot::bars(&c)?),
                None => skipped("the trace has no allocation to replay"),
            }
        }
        Chart::Leaks => match data.leaks.as_ref().ok_or_else(missing)? {
            Ok(r) => Ok(memtrace_plot::bars(&charts::leak_chart(r))?),
            Err(LeakError::NoScan(why)) => skipped(why),
            Err(e) => Err(anyhow::anyhow!("{e}")),
        },
        Chart::Flame => {
            let folded = data.flame.as_ref().ok_or_else(missing)?;
            if folded.empty {
                return skipped("no stack allocated any bytes");
            }
            let mut out = Vec::new();
            flamegraph::svg(folded, Measure::Bytes, &mut out)?;
            Ok(String::from_utf8(out).context("inferno wrote invalid UTF-8")?)
        }
    }
}

/// The files `--data` writes for the trace named `stem`, as `(file name,
/// contents)`: each byte for byte what its command prints with its default
/// options (`println!` of pretty JSON is the JSON and a newline).
fn data_files(stem: &str, data: &Data) -> Result<Vec<(String, String)>> {
    let missing = |what: &str| anyhow::anyhow!("no {what} gathered for --data");
    let latency = data.latency.as_ref().ok_or_else(|| missing("latency"))?;
    let heap = data.heap.as_ref().ok_or_else(|| missing("real heap"))?;
    let p = data
        .policies
        .as_ref()
        .ok_or_else(|| missing("policy replay"))?;
    let frag = frag::trace_json(Some(heap), p.n_requests, &p.reports, p.best.as_ref());
    Ok(vec![
        (
            format!("{stem}.txt"),
            report::render_text(&data.report, TextOptions::default()),
        ),
        (
            format!("{stem}.json"),
            format!("{}\n", serde_json::to_string_pretty(&data.report)?),
        ),
        (
            format!("{stem}.latency.json"),
            format!("{}\n", serde_json::to_string_pretty(latency)?),
        ),
        (
            format!("{stem}.frag.json"),
            format!("{}\n", serde_json::to_string_pretty(&frag)?),
        ),
    ])
}

/// The NAME of `--data`'s files: the trace's file name without its extension.
fn data_stem(trace: &Path) -> Result<&str> {
    trace.file_stem().and_then(|s| s.to_str()).with_context(|| {
        format!(
            "{}: --data names its files after the trace's file name, and this path has none in UTF-8",
            trace.display()
        )
    })
}

/// Runs `memtrace plot`.
pub fn plot(args: PlotArgs) -> Result<ExitCode> {
    let dir = args
        .output
        .clone()
        .unwrap_or_else(|| default_dir(&args.trace));
    let charts = if args.only.is_empty() {
        Chart::ALL.to_vec()
    } else {
        args.only.clone()
    };
    let stem = args
        .data
        .as_ref()
        .map(|_| data_stem(&args.trace))
        .transpose()?;
    // Read the trace before creating anything, so a bad trace leaves no
    // directory.
    let data = progress::open(&args.trace, args.follow.extent(), Named::ByUser)
        .and_then(|reader| gather(Needs::of(&charts, stem.is_some()), reader))
        .with_context(|| format!("{}", args.trace.display()))?;
    let data_files = match stem {
        Some(stem) => data_files(stem, &data)?,
        None => Vec::new(),
    };
    if let Some(folded) = &data.flame {
        flamegraph::warn(folded);
    }
    let program = charts::program_name(&data.report.program.exe);
    // A fresh directory, or one of ours: never a link, never another user's.
    let out = memtrace_safe_write::OutDir::create(&dir)?;
    let trace_shown = args.trace.display().to_string();
    let mut figures = Vec::new();
    for chart in charts {
        let svg = draw(chart, &data)?;
        let file = format!("{}.svg", chart.name());
        let path = out.write(&file, svg.as_bytes())?;
        println!("{}", path.display());
        figures.push(Figure {
            file,
            title: chart.title().to_string(),
            caption: chart.caption().to_string(),
            command: format!("memtrace plot {trace_shown} --only {}", chart.name()),
        });
    }
    let html = page::html(&Page {
        title: format!("memtrace charts: {program}"),
        intro: vec![format!(
            "Charts of the trace {trace_shown}, drawn by memtrace plot. The text and JSON \
             behind them: memtrace report, memtrace latency and memtrace frag on the same trace."
        )],
        sections: vec![Section {
            heading: program,
            text: String::new(),
            figures,
        }],
    });
    let index = out.write("index.html", html.as_bytes())?;
    println!("{}", index.display());
    if let Some(dir) = &args.data {
        let out = memtrace_safe_write::OutDir::create(dir)?;
        for (name, text) in &data_files {
            println!("{}", out.write(name, text.as_bytes())?.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use memtrace_format::{Codec, Func, Header, HeapEvent, ThreadItem, Trailer, Writer};

    /// One thread allocates 24 B and 40 B, then frees the 24 B.
    fn trace() -> Vec<u8> {
        let header = Header {
            pid: 7,
            exe: "/bin/demo".into(),
            latency_measured: true,
            ..Header::default()
        };
        let mut w = Writer::new(Vec::new(), &header, Codec::Raw).unwrap();
        w.stack_nodes(1, &[(0, 0x1000)]).unwrap();
        let call = |func: Func, ts: u64, addr: u64, size: u64| {
            ThreadItem::Heap(HeapEvent {
                func: func as u8,
                ts,
                latency: 100,
                addr,
                size,
                usable: size,
                stack: u32::from(func != Func::Free),
                ..Default::default()
            })
        };
        let calls = [
            call(Func::Malloc, 10, 0x50, 24),
            call(Func::Malloc, 20, 0x80, 40),
            call(Func::Free, 30, 0x50, 0),
        ];
        w.batch(1, &calls).unwrap();
        w.finish(&Trailer::default()).unwrap()
    }

    /// The analyses for `charts` (and with `data` for `--data`), from one
    /// decode of the trace: `gather` takes a single reader.
    fn gathered(charts: &[Chart], data: bool) -> Data {
        let bytes = trace();
        gather(Needs::of(charts, data), Reader::new(&bytes[..]).unwrap()).unwrap()
    }

    #[test]
    fn every_chart_comes_from_one_decode() {
        let data = gathered(&Chart::ALL, false);
        assert_eq!(data.report.totals.peak_bytes, 64);
        assert_eq!(data.report.totals.unfreed_bytes, 40);
        assert_eq!(data.latency.as_ref().unwrap().calls, 3);
        let p = data.policies.as_ref().unwrap();
        assert_eq!(p.n_requests, 3);
        assert_eq!(p.reports.len(), PolicyKind::ALL.len());
        assert!(p
            .reports
            .iter()
            .all(|r| r.peak_live == 64 && r.n_allocs == 2));
        assert!(!data.flame.as_ref().unwrap().empty);
        assert!(matches!(data.leaks, Some(Err(LeakError::NoScan(_)))));
        // The real heap from the same decode: no `[heap]` snapshot, so
        // nothing is laid out, but the peak and the end are the trace's.
        let heap = data.heap.as_ref().unwrap();
        assert!(!heap.measured);
        assert_eq!(
            (heap.at_peak.live_bytes, heap.at_peak.unmapped_blocks),
            (64, 2)
        );
        assert_eq!(
            (heap.at_end.live_bytes, heap.at_end.unmapped_blocks),
            (40, 1)
        );
        assert_eq!(heap.timeline.len(), 3);
    }

    #[test]
    fn the_real_heap_is_gathered_only_when_wanted() {
        for chart in Chart::ALL {
            let data = gathered(&[chart], false);
            assert_eq!(
                data.heap.is_some(),
                chart == Chart::Frag,
                "{}",
                chart.name()
            );
        }
        assert!(gathered(&[Chart::Heap], true).heap.is_some());
    }

    #[test]
    fn the_data_files_come_with_any_chart() {
        for charts in [&[Chart::Heap][..], &[Chart::Frag], &Chart::ALL] {
            let data = gathered(charts, true);
            let files = data_files("demo", &data).unwrap();
            let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    "demo.txt",
                    "demo.json",
                    "demo.latency.json",
                    "demo.frag.json"
                ]
            );
        }
    }

    #[test]
    fn the_data_files_are_named_after_the_trace() {
        assert_eq!(data_stem(Path::new("traces/sites.trace")).unwrap(), "sites");
        assert_eq!(data_stem(Path::new("app")).unwrap(), "app");
        assert_eq!(data_stem(Path::new("a.b.trace")).unwrap(), "a.b");
        assert!(data_stem(Path::new("..")).is_err());
    }
}
