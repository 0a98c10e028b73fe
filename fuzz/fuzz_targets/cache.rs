//! `memtrace cache --trace`: phase deltas and allocation scatter read from
//! the trace, the report rendered as text and JSON and the chart planned.
#![no_main]

use libfuzzer_sys::fuzz_target;
use memtrace_cache::chart::MissChart;
use memtrace_cache::findings::{self, Findings, SiteScatter};
use memtrace_cache::json::CacheReport;
use memtrace_cache::text::render_text;

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = memtrace_fuzz::reader(data) else {
        return;
    };
    let Ok((phases, scatter)) = findings::read_trace(&mut reader) else {
        return;
    };
    for p in &phases {
        let _ = p.delta("rss");
    }
    let sites = scatter
        .into_iter()
        .map(|s| SiteScatter {
            site: format!("stack {}", s.stack),
            scatter: s,
        })
        .collect();
    let f = Findings {
        phases: Some(phases),
        scatter: Some(sites),
        trace: Some("fuzz.trace".into()),
        ..Findings::default()
    };
    let _ = render_text(&f, 10);
    let _ = serde_json::to_string(&CacheReport::of(&f));
    if let Some(chart) = MissChart::plan(&f, "fuzz", 10) {
        let _ = chart.to_svg();
    }
});
