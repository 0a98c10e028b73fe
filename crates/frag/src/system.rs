//! The kernel's own view: `/proc/buddyinfo` and `/proc/slabinfo`.
//!
//! For each zone and order the two indices are computed as `mm/vmstat.c`
//! computes them for `/sys/kernel/debug/extfrag/{unusable_index,
//! extfrag_index}`, in the kernel's integer thousandths, and
//! [`format_index`] prints them as the kernel does (`%d.%03d`).

use std::fmt;
use std::path::Path;

use serde::Serialize;

/// One line of `/proc/buddyinfo`: free blocks per order in one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuddyZone {
    /// NUMA node.
    pub node: u32,
    /// Zone name (`DMA`, `DMA32`, `Normal`, ...).
    pub zone: String,
    /// `free[o]`: free blocks of `2^o` pages.
    pub free: Vec<u64>,
}

/// The kernel's `struct contig_page_info` for one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ContigPageInfo {
    /// Free pages in the zone.
    pub free_pages: u64,
    /// Free blocks of any order.
    pub free_blocks_total: u64,
    /// Blocks of the requested order that the free blocks could supply.
    pub free_blocks_suitable: u64,
}

impl BuddyZone {
    /// Free pages in the zone (`sum free[o] * 2^o`).
    pub fn free_pages(&self) -> u64 {
        self.contig_page_info(0).free_pages
    }

    /// The kernel's `fill_contig_page_info` for `order`.
    pub fn contig_page_info(&self, order: u32) -> ContigPageInfo {
        let mut info = ContigPageInfo {
            free_pages: 0,
            free_blocks_total: 0,
            free_blocks_suitable: 0,
        };
        for (o, &blocks) in self.free.iter().enumerate() {
            let o = o as u32;
            info.free_blocks_total = info.free_blocks_total.wrapping_add(blocks);
            info.free_pages = info.free_pages.wrapping_add(blocks << o);
            if o >= order {
                info.free_blocks_suitable = info
                    .free_blocks_suitable
                    .wrapping_add(blocks << (o - order));
            }
        }
        info
    }

    /// The unusable free space index for `order`, in thousandths: the share
    /// of free pages that lie in blocks smaller than `2^order` pages
    /// (`unusable_free_index`; 1000 when nothing is free).
    pub fn unusable_index(&self, order: u32) -> i32 {
        let info = self.contig_page_info(order);
        if info.free_pages == 0 {
            return 1000;
        }
        let unusable = info
            .free_pages
            .wrapping_sub(info.free_blocks_suitable << order);
        (unusable.wrapping_mul(1000) / info.free_pages) as i32
    }

    /// The fragmentation index for `order`, in thousandths
    /// (`__fragmentation_index`): -1000 when a block of that order is free
    /// (the allocation would succeed), 0 when nothing is free, else towards
    /// 0 for lack of memory and towards 1000 for fragmentation.
    pub fn fragmentation_index(&self, order: u32) -> i32 {
        let info = self.contig_page_info(order);
        let requested = 1u64 << order;
        if info.free_blocks_total == 0 {
            return 0;
        }
        if info.free_blocks_suitable != 0 {
            return -1000;
        }
        let q = (1000u64.wrapping_add(info.free_pages.wrapping_mul(1000) / requested))
            / info.free_blocks_total;
        1000u64.wrapping_sub(q) as i32
    }
}

/// A kernel index in thousandths as the kernel prints it: `%d.%03d` of
/// `index / 1000` and `index % 1000` (so -1000 is `-1.000`).
pub fn format_index(index: i32) -> String {
    format!("{}.{:03}", index / 1000, index % 1000)
}

/// One cache of `/proc/slabinfo` (version 2.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlabCache {
    /// Cache name.
    pub name: String,
    /// Objects in use.
    pub active_objs: u64,
    /// Objects allocated in slabs.
    pub num_objs: u64,
    /// Object size in bytes.
    pub objsize: u64,
    /// Objects per slab.
    pub objperslab: u64,
    /// Pages per slab.
    pub pagesperslab: u64,
    /// Slabs with at least one object in use.
    pub active_slabs: u64,
    /// Slabs.
    pub num_slabs: u64,
}

impl SlabCache {
    /// `(num_objs - active_objs) * objsize`: bytes of free objects.
    pub fn wasted_bytes(&self) -> u64 {
        self.num_objs.saturating_sub(self.active_objs) * self.objsize
    }
}

/// Why a `/proc` file could not be read.
#[derive(Debug)]
pub enum SystemError {
    /// The file could not be read.
    Io(std::io::Error),
    /// Line `line` (1-based) is not in the expected form.
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl fmt::Display for SystemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SystemError::Io(e) => write!(f, "{e}"),
            SystemError::Parse { line, message } => write!(f, "line {line}: {message}"),
        }
    }
}

impl std::error::Error for SystemError {}

fn parse_error(line: usize, message: impl Into<String>) -> SystemError {
    SystemError::Parse {
        line,
        message: message.into(),
    }
}

/// Parses `/proc/buddyinfo`: `Node 0, zone   Normal   1046    527 ...`.
pub fn parse_buddyinfo(text: &str) -> Result<Vec<BuddyZone>, SystemError> {
    let mut zones = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let rest = line
            .strip_prefix("Node ")
            .ok_or_else(|| parse_error(n, "expected `Node N, zone NAME counts...`"))?;
        let (node, rest) = rest
            .split_once(',')
            .ok_or_else(|| parse_error(n, "expected `,` after the node"))?;
        let node = node
            .trim()
            .parse()
            .map_err(|_| parse_error(n, format!("bad node `{node}`")))?;
        let mut words = rest.split_whitespace();
        if words.next() != Some("zone") {
            return Err(parse_error(n, "expected `zone`"));
        }
        let zone = words
            .next()
            .ok_or_else(|| parse_error(n, "missing zone name"))?
            .to_string();
        let free = words
            .map(|w| {
                w.parse()
                    .map_err(|_| parse_error(n, format!("bad count `{w}`")))
            })
            .collect::<Result<Vec<u64>, _>>()?;
        zones.push(BuddyZone { node, zone, free });
    }
    Ok(zones)
}

/// Parses `/proc/slabinfo` version 2.1 (its two header lines included).
pub fn parse_slabinfo(text: &str) -> Result<Vec<SlabCache>, SystemError> {
    let mut caches = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(version) = line.strip_prefix("slabinfo - version:") {
            if version.trim() != "2.1" {
                return Err(parse_error(
                    n,
                    format!("version {} is not 2.1", version.trim()),
                ));
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        // name active num objsize objperslab pagesperslab : tunables l b s
        // : slabdata active_slabs num_slabs sharedavail
        if words.len() < 16 || words[6] != ":" || words[11] != ":" {
            return Err(parse_error(n, "not a slabinfo 2.1 cache line"));
        }
        let num = |k: usize| {
            words[k]
                .parse::<u64>()
                .map_err(|_| parse_error(n, format!("bad number `{}`", words[k])))
        };
        caches.push(SlabCache {
            name: words[0].to_string(),
            active_objs: num(1)?,
            num_objs: num(2)?,
            objsize: num(3)?,
            objperslab: num(4)?,
            pagesperslab: num(5)?,
            active_slabs: num(13)?,
            num_slabs: num(14)?,
        });
    }
    Ok(caches)
}

/// The caches by wasted bytes, most first (ties by name).
pub fn rank_by_waste(caches: &[SlabCache]) -> Vec<&SlabCache> {
    let mut ranked: Vec<&SlabCache> = caches.iter().collect();
    ranked.sort_by(|a, b| {
        b.wasted_bytes()
            .cmp(&a.wasted_bytes())
            .then_with(|| a.name.cmp(&b.name))
    });
    ranked
}

fn read(path: &Path) -> Result<String, SystemError> {
    std::fs::read_to_string(path).map_err(SystemError::Io)
}

/// Reads and parses a buddyinfo file (`/proc/buddyinfo` or a capture).
pub fn read_buddyinfo(path: &Path) -> Result<Vec<BuddyZone>, SystemError> {
    parse_buddyinfo(&read(path)?)
}

/// Reads and parses a slabinfo file (`/proc/slabinfo`, root only, or a
/// capture).
pub fn read_slabinfo(path: &Path) -> Result<Vec<SlabCache>, SystemError> {
    parse_slabinfo(&read(path)?)
}
