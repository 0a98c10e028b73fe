//! Simulated cache misses: the output of a program run under valgrind's
//! cachegrind (`--cache-sim=yes`), parsed.
//!
//! These are the misses of cachegrind's model of the caches (first-level data
//! and last-level, configured from the host's CPUID), not of the real
//! hardware: always labelled "simulated". The run, which the caller makes,
//! is about 50 times slower than a native one.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Totals of the simulated events, as cachegrind names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimCounts {
    /// Instructions executed (`Ir`).
    pub instructions: u64,
    /// Data reads (`Dr`).
    pub data_reads: u64,
    /// Data writes (`Dw`).
    pub data_writes: u64,
    /// First-level data read misses (`D1mr`).
    pub d1_read_misses: u64,
    /// First-level data write misses (`D1mw`).
    pub d1_write_misses: u64,
    /// Last-level data read misses (`DLmr`).
    pub ll_read_misses: u64,
    /// Last-level data write misses (`DLmw`).
    pub ll_write_misses: u64,
}

impl SimCounts {
    /// First-level data misses, reads and writes.
    pub fn d1_misses(&self) -> u64 {
        self.d1_read_misses + self.d1_write_misses
    }

    /// Last-level data misses, reads and writes.
    pub fn ll_misses(&self) -> u64 {
        self.ll_read_misses + self.ll_write_misses
    }

    /// Data references, reads and writes.
    pub fn data_refs(&self) -> u64 {
        self.data_reads + self.data_writes
    }

    fn add(&mut self, other: &SimCounts) {
        self.instructions += other.instructions;
        self.data_reads += other.data_reads;
        self.data_writes += other.data_writes;
        self.d1_read_misses += other.d1_read_misses;
        self.d1_write_misses += other.d1_write_misses;
        self.ll_read_misses += other.ll_read_misses;
        self.ll_write_misses += other.ll_write_misses;
    }
}

/// A parsed cachegrind output file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Simulation {
    /// The simulated caches, as cachegrind describes them (`desc:` lines).
    pub caches: Vec<String>,
    /// Whole-run totals (the `summary:` line).
    pub total: SimCounts,
    /// Per function (`fn=` name), most first-level data misses first.
    pub functions: Vec<(String, SimCounts)>,
    /// The source file of each function (the `fl=` before its first
    /// `fn=`): `???` where the code has no debug information.
    pub files: BTreeMap<String, String>,
}

/// Why a simulation failed.
#[derive(Debug)]
pub enum SimError {
    /// valgrind could not be started.
    NoValgrind(std::io::Error),
    /// valgrind ran but wrote no usable output.
    Failed(String),
    /// The output file did not parse.
    Parse(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::NoValgrind(e) => write!(f, "cannot run valgrind ({e}); install valgrind"),
            SimError::Failed(s) => write!(f, "cachegrind failed: {s}"),
            SimError::Parse(s) => write!(f, "cannot parse cachegrind's output: {s}"),
        }
    }
}

impl std::error::Error for SimError {}

/// Parses a cachegrind output file (format of valgrind 3.x).
pub fn parse(text: &str) -> Result<Simulation, SimError> {
    let mut caches = Vec::new();
    let mut columns: Vec<String> = Vec::new();
    let mut total = None;
    let mut per_fn: HashMap<String, SimCounts> = HashMap::new();
    let mut current_fn: Option<String> = None;
    let mut current_file = String::from("???");
    let mut files = BTreeMap::new();
    for line in text.lines() {
        if let Some(desc) = line.strip_prefix("desc: ") {
            caches.push(desc.trim().to_string());
        } else if let Some(events) = line.strip_prefix("events:") {
            columns = events.split_whitespace().map(str::to_string).collect();
        } else if let Some(summary) = line.strip_prefix("summary:") {
            let values = numbers(summary)?;
            total = Some(counts(&columns, &values)?);
        } else if let Some(file) = line.strip_prefix("fl=") {
            current_file = file.to_string();
        } else if let Some(name) = line.strip_prefix("fn=") {
            files
                .entry(name.to_string())
                .or_insert_with(|| current_file.clone());
            current_fn = Some(name.to_string());
        } else if line.starts_with(|c: char| c.is_ascii_digit()) {
            let Some(name) = &current_fn else { continue };
            let values = numbers(line)?;
            // The first number is the line number; the counts follow.
            let row = counts(&columns, values.get(1..).unwrap_or(&[]))?;
            per_fn.entry(name.clone()).or_default().add(&row);
        }
    }
    if columns.is_empty() {
        return Err(SimError::Parse("no events: line".into()));
    }
    for needed in ["D1mr", "D1mw", "DLmr", "DLmw"] {
        if !columns.iter().any(|c| c == needed) {
            return Err(SimError::Parse(format!(
                "no {needed} column (was --cache-sim=yes given?)"
            )));
        }
    }
    let total = total.ok_or_else(|| SimError::Parse("no summary: line".into()))?;
    let mut functions: Vec<(String, SimCounts)> = per_fn.into_iter().collect();
    functions.sort_by(|a, b| b.1.d1_misses().cmp(&a.1.d1_misses()).then(a.0.cmp(&b.0)));
    Ok(Simulation {
        caches,
        total,
        functions,
        files,
    })
}

fn numbers(text: &str) -> Result<Vec<u64>, SimError> {
    text.split_whitespace()
        .map(|n| {
            n.parse()
                .map_err(|_| SimError::Parse(format!("not a number: {n}")))
        })
        .collect()
}

/// Missing trailing columns are zeros, as cachegrind writes them.
fn counts(columns: &[String], values: &[u64]) -> Result<SimCounts, SimError> {
    if values.len() > columns.len() {
        return Err(SimError::Parse(format!(
            "{} values for {} events",
            values.len(),
            columns.len()
        )));
    }
    let mut c = SimCounts::default();
    for (name, &value) in columns.iter().zip(values) {
        match name.as_str() {
            "Ir" => c.instructions = value,
            "Dr" => c.data_reads = value,
            "Dw" => c.data_writes = value,
            "D1mr" => c.d1_read_misses = value,
            "D1mw" => c.d1_write_misses = value,
            "DLmr" => c.ll_read_misses = value,
            "DLmw" => c.ll_write_misses = value,
            _ => {}
        }
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "desc: I1 cache:         32768 B, 64 B, 8-way associative
desc: D1 cache:         32768 B, 64 B, 8-way associative
desc: LL cache:         268435456 B, 64 B, direct-mapped
cmd: ./locality list 20000
events: Ir I1mr ILmr Dr D1mr DLmr Dw D1mw DLmw
fl=locality.c
fn=traverse_list
60 10 1 1 5 4 0
61 20 0 0 10 3 1 2 1 1
fn=main
10 3
summary: 33 1 1 15 7 1 2 1 1
";

    #[test]
    fn parses_totals_and_functions() {
        let sim = parse(SAMPLE).unwrap();
        assert_eq!(sim.caches.len(), 3);
        assert_eq!(sim.total.instructions, 33);
        assert_eq!(sim.total.d1_misses(), 8);
        assert_eq!(sim.total.ll_misses(), 2);
        assert_eq!(sim.functions[0].0, "traverse_list");
        assert_eq!(sim.functions[0].1.d1_read_misses, 7);
        assert_eq!(sim.functions[0].1.data_reads, 15);
        assert_eq!(sim.functions[0].1.ll_misses(), 2);
        assert_eq!(sim.functions[1].1.instructions, 3);
        assert_eq!(sim.files["traverse_list"], "locality.c");
        assert_eq!(sim.files["main"], "locality.c");
    }

    #[test]
    fn refuses_output_without_the_cache_simulation() {
        let text = "events: Ir\nsummary: 10\n";
        assert!(matches!(parse(text), Err(SimError::Parse(m)) if m.contains("D1mr")));
    }
}
