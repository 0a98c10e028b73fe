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
//! their default options; see [`crate::charts`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use memtrace_analyze::flame::Measure;
use memtrace_analyze::heapmap::HeapMap;
use memtrace_analyze::latency;
use memtrace_analyze::report::Report;
use memtrace_format::{Extent, Named};
use memtrace_frag::{best_policy, replay, Config, PolicyKind, PolicyReport};
use memtrace_plot::page::{self, Figure, Page, Section};

use crate::charts;
use crate::cmd::extent::FollowArg;
use crate::cmd::flamegraph;
use crate::cmd::list::Item;
use crate::cmd::report::load_report_within;
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

/// The policy replay: one report per policy, and the best policy with why.
type Replayed = (Vec<PolicyReport>, Option<(PolicyKind, String)>);

/// The analyses behind the charts, each done once, when first needed.
struct Data<'a> {
    trace: &'a Path,
    /// What every analysis reads of the trace: the same bytes for all.
    extent: Extent,
    report: Option<Report>,
    heap: Option<HeapMap>,
    policies: Option<Replayed>,
}

impl<'a> Data<'a> {
    fn report(&mut self) -> Result<&Report> {
        if self.report.is_none() {
            self.report = Some(load_report_within(self.trace, self.extent)?);
        }
        Ok(self.report.as_ref().expect("loaded"))
    }

    fn program(&mut self) -> Result<String> {
        Ok(charts::program_name(&self.report()?.program.exe))
    }

    fn heap(&mut self) -> Result<&HeapMap> {
        if self.heap.is_none() {
            let (trace, extent) = (self.trace, self.extent);
            let heap =
                memtrace_analyze::heapmap::analyze(|| progress::open(trace, extent, Named::ByUser))
                    .with_context(|| format!("{}", trace.display()))?;
            self.heap = Some(heap);
        }
        Ok(self.heap.as_ref().expect("analyzed"))
    }

    fn policies(&mut self) -> Result<&Replayed> {
        if self.policies.is_none() {
            let context = || format!("{}", self.trace.display());
            let mut reader =
                progress::open(self.trace, self.extent, Named::ByUser).with_context(context)?;
            let stream =
                memtrace_analyze::requests::from_reader(&mut reader).with_context(context)?;
            let config = Config::default();
            let reports: Vec<PolicyReport> = PolicyKind::ALL
                .iter()
                .map(|&p| replay(&stream, p, &config))
                .collect();
            let best = best_policy(&reports);
            self.policies = Some((reports, best));
        }
        Ok(self.policies.as_ref().expect("replayed"))
    }
}

/// Draws one chart (or its placeholder) as SVG text.
fn draw(chart: Chart, data: &mut Data) -> Result<String> {
    let skipped = |reason: &str| Ok(memtrace_plot::skipped(chart.title(), reason)?);
    match chart {
        Chart::Heap => Ok(memtrace_plot::timeline(&charts::heap_timeline(
            data.report()?,
        ))?),
        Chart::Sizes => match charts::size_histogram(data.report()?) {
            Some(h) => Ok(memtrace_plot::histogram(&h)?),
            None => skipped("the trace has no allocation"),
        },
        Chart::Latency => {
            let context = || format!("{}", data.trace.display());
            let mut reader =
                progress::open(data.trace, data.extent, Named::ByUser).with_context(context)?;
            let r = latency::from_reader(&mut reader, latency::Config::default())
                .with_context(context)?;
            match charts::latency_histogram(&r) {
                Some(h) => Ok(memtrace_plot::histogram(&h)?),
                None => skipped("the trace has no allocator latencies (MEMTRACE_TIMING=0)"),
            }
        }
        Chart::Frag => {
            let program = data.program()?;
            match charts::real_heap_timeline(data.heap()?, &program) {
                Some(t) => Ok(memtrace_plot::timeline(&t)?),
                None => skipped("the trace has no [heap] snapshot to rebuild the heap from"),
            }
        }
        Chart::Policies => {
            let program = data.program()?;
            let (reports, best) = data.policies()?;
            match charts::policy_chart(reports, best.as_ref(), &program) {
                Some(c) => Ok(memtrace_plot::bars(&c)?),
                None => skipped("the trace has no allocation to replay"),
            }
        }
        Chart::Leaks => {
            let suppressions = memtrace_leaks::Suppressions::builtin();
            let reader = progress::open(data.trace, data.extent, Named::ByUser)
                .with_context(|| format!("{}", data.trace.display()))?;
            match memtrace_analyze::leaks::from_reader(reader, &suppressions) {
                Ok(r) => Ok(memtrace_plot::bars(&charts::leak_chart(&r))?),
                Err(memtrace_analyze::leaks::LeakError::NoScan(why)) => skipped(&why),
                Err(e) => Err(anyhow::anyhow!("{}: {e}", data.trace.display())),
            }
        }
        Chart::Flame => {
            let folded = flamegraph::fold(data.trace, data.extent, Measure::Bytes)?;
            if folded.empty {
                return skipped("no stack allocated any bytes");
            }
            let mut out = Vec::new();
            flamegraph::svg(&folded, Measure::Bytes, &mut out)?;
            Ok(String::from_utf8(out).context("inferno wrote invalid UTF-8")?)
        }
    }
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
    let mut data = Data {
        trace: &args.trace,
        extent: args.follow.pinned(&args.trace)?,
        report: None,
        heap: None,
        policies: None,
    };
    // Read the trace before creating anything, so a bad trace leaves no directory.
    let program = data.program()?;
    // A fresh directory, or one of ours: never a link, never another user's.
    let out = memtrace_safe_write::OutDir::create(&dir)?;
    let trace_shown = args.trace.display().to_string();
    let mut figures = Vec::new();
    for chart in charts {
        let svg = draw(chart, &mut data)?;
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
    Ok(ExitCode::SUCCESS)
}
