//! Timeline files: CSV (one row per sample) and JSON (samples, intervals,
//! verdicts and the summary), and reading a CSV timeline back.
//!
//! The CSV's columns are the fields of [`Sample`] in declaration order and
//! then `state`, the verdict of the interval that ends at that sample (empty
//! on the first row). An empty cell is a `None`. Reading ignores `state`
//! and any unknown column, so a timeline is re-judged from its raw counters.

use serde::Serialize;

use crate::{Interval, Sample, State, Summary, Thresholds};

/// The JSON timeline's `schema` value.
pub const JSON_SCHEMA: &str = "memtrace-swap/1";

/// One value of a CSV cell.
trait Cell: Sized {
    fn write(&self) -> String;
    fn parse(text: &str) -> Option<Self>;
}

impl Cell for u64 {
    fn write(&self) -> String {
        self.to_string()
    }
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl Cell for u32 {
    fn write(&self) -> String {
        self.to_string()
    }
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

impl<T: Cell> Cell for Option<T> {
    fn write(&self) -> String {
        self.as_ref().map(Cell::write).unwrap_or_default()
    }
    fn parse(text: &str) -> Option<Self> {
        if text.is_empty() {
            Some(None)
        } else {
            T::parse(text).map(Some)
        }
    }
}

impl Cell for f64 {
    fn write(&self) -> String {
        self.to_string()
    }
    fn parse(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

macro_rules! sample_columns {
    ($($field:ident),* $(,)?) => {
        /// The CSV columns that hold a [`Sample`], in order.
        pub const SAMPLE_COLUMNS: &[&str] = &[$(stringify!($field)),*];

        fn sample_cells(s: &Sample) -> Vec<String> {
            vec![$(Cell::write(&s.$field)),*]
        }

        fn sample_from_cells(names: &[&str], cells: &[&str]) -> Result<Sample, String> {
            let get = |name: &str| names.iter().position(|&c| c == name).map(|i| cells[i]);
            let mut s = Sample::default();
            $(
                let text = get(stringify!($field))
                    .ok_or_else(|| format!("no column {}", stringify!($field)))?;
                s.$field = Cell::parse(text).ok_or_else(|| {
                    format!("bad value {text:?} in column {}", stringify!($field))
                })?;
            )*
            Ok(s)
        }
    };
}

sample_columns!(
    t_ms,
    n_procs,
    rss_anon_kib,
    rss_file_kib,
    rss_shmem_kib,
    swap_kib,
    minflt,
    majflt,
    sys_pswpin,
    sys_pswpout,
    sys_pgmajfault,
    sys_pgscan,
    sys_pgsteal,
    sys_refault_anon,
    sys_refault_file,
    mem_free_kib,
    mem_available_kib,
    swap_total_kib,
    swap_free_kib,
    psi_some_avg10,
    psi_full_avg10,
    psi_some_us,
    psi_full_us,
    cg_usage_bytes,
    cg_limit_bytes,
    cg_swap_bytes,
    cg_limit_hits,
    cg_oom_kills,
    cg_refault,
    cg_majflt,
    cg_psi_some_us,
    cg_psi_full_us,
);

/// The CSV header line (with newline).
pub fn csv_header() -> String {
    let mut line = SAMPLE_COLUMNS.join(",");
    line.push_str(",state\n");
    line
}

/// One CSV row (with newline): a sample and the state of the interval that
/// ends at it.
pub fn csv_row(sample: &Sample, state: Option<State>) -> String {
    let mut line = sample_cells(sample).join(",");
    line.push(',');
    line.push_str(state.map_or("", State::name));
    line.push('\n');
    line
}

/// A whole CSV timeline.
pub fn to_csv(samples: &[Sample], states: &[State]) -> String {
    let mut out = csv_header();
    for (n, sample) in samples.iter().enumerate() {
        let state = n.checked_sub(1).and_then(|i| states.get(i).copied());
        out.push_str(&csv_row(sample, state));
    }
    out
}

/// Reads the samples of a CSV timeline; the error names the line.
pub fn read_csv(text: &str) -> Result<Vec<Sample>, String> {
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.next().ok_or("empty timeline")?;
    let names: Vec<&str> = header.split(',').collect();
    let mut samples = Vec::new();
    for (n, line) in lines {
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != names.len() {
            return Err(format!(
                "line {}: {} cells, the header has {}",
                n + 1,
                cells.len(),
                names.len()
            ));
        }
        samples
            .push(sample_from_cells(&names, &cells).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(samples)
}

/// The intervals between consecutive samples.
pub fn intervals(samples: &[Sample]) -> Vec<Interval> {
    samples
        .windows(2)
        .map(|w| Interval::between(&w[0], &w[1]))
        .collect()
}

/// An interval and its verdict, as the JSON timeline lists them.
#[derive(Serialize)]
struct JudgedInterval<'a> {
    #[serde(flatten)]
    interval: &'a Interval,
    state: State,
}

/// Everything about one run, as the JSON timeline holds it.
#[derive(Serialize)]
pub struct Timeline<'a> {
    /// Always [`JSON_SCHEMA`].
    pub schema: &'static str,
    /// The monitored command line, or empty for `--pid`.
    pub command: Vec<String>,
    /// The root pid.
    pub pid: i32,
    /// The memory cgroup's directory, if the process had one.
    pub cgroup: Option<String>,
    /// The sampling interval asked for.
    pub interval_ms: u64,
    /// The thresholds of the verdicts.
    pub thresholds: &'a Thresholds,
    /// Every sample.
    pub samples: &'a [Sample],
    /// The intervals between the samples.
    pub intervals: &'a [Interval],
    /// The verdict of each interval.
    pub states: &'a [State],
    /// The summary.
    pub summary: &'a Summary,
}

impl Timeline<'_> {
    /// The timeline as pretty-printed JSON (with newline).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            schema: &'static str,
            command: &'a [String],
            pid: i32,
            cgroup: &'a Option<String>,
            interval_ms: u64,
            thresholds: &'a Thresholds,
            summary: &'a Summary,
            samples: &'a [Sample],
            intervals: Vec<JudgedInterval<'a>>,
        }
        let out = Out {
            schema: self.schema,
            command: &self.command,
            pid: self.pid,
            cgroup: &self.cgroup,
            interval_ms: self.interval_ms,
            thresholds: self.thresholds,
            summary: self.summary,
            samples: self.samples,
            intervals: self
                .intervals
                .iter()
                .zip(self.states)
                .map(|(interval, &state)| JudgedInterval { interval, state })
                .collect(),
        };
        let mut text = serde_json::to_string_pretty(&out).expect("a timeline serializes");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips_every_field() {
        let a = Sample {
            t_ms: 5,
            n_procs: 2,
            rss_anon_kib: 3,
            swap_kib: 7,
            majflt: 11,
            psi_some_avg10: Some(1.5),
            psi_some_us: Some(13),
            cg_limit_bytes: None,
            cg_usage_bytes: Some(17),
            ..Sample::default()
        };
        let b = Sample {
            t_ms: 105,
            ..a.clone()
        };
        let text = to_csv(&[a.clone(), b.clone()], &[State::Swapping]);
        assert!(text.lines().nth(2).unwrap().ends_with(",swapping"));
        assert_eq!(read_csv(&text).unwrap(), vec![a, b]);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let text = format!("{}1,2\n", csv_header());
        assert_eq!(
            read_csv(&text).unwrap_err(),
            format!(
                "line 2: 2 cells, the header has {}",
                SAMPLE_COLUMNS.len() + 1
            )
        );
    }
}
