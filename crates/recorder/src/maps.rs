//! The heap's address ranges, read from `/proc/self/maps`: the brk heap and
//! the anonymous read-write mappings (malloc's other arenas and its
//! mmap'd blocks live there). The fragmentation analysis needs the extent.

use memtrace_format::Region;

/// The heap-like mappings now; `None` when `/proc/self/maps` is
/// unreadable, or memory for the list cannot be had.
pub(crate) fn heap_regions() -> Option<Vec<Region>> {
    let text = crate::memory::read_proc("/proc/self/maps").ok()?;
    parse(&text)
}

/// Parses the lines of a maps file; `None` when memory for the list
/// cannot be had.
fn parse(text: &str) -> Option<Vec<Region>> {
    let mut regions = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        // offset, device, inode, then the optional path.
        let path = fields.nth(3).unwrap_or("");
        let kind = match path {
            "[heap]" => 0,
            "" if perms.starts_with("rw") => 1,
            _ => continue,
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        regions.try_reserve(1).ok()?;
        regions.push(Region { start, end, kind });
    }
    Some(regions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_and_anonymous_writable_mappings_are_kept() {
        let maps = "\
55d1c0000000-55d1c0021000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000021000 rw-p 00000000 00:00 0 
7f0000021000-7f0004000000 ---p 00000000 00:00 0 
7f1000000000-7f1000001000 r--p 00000000 fd:01 1234                       /usr/lib/libc.so.6
7f2000000000-7f2000002000 rw-p 00000000 fd:01 1234                       /usr/lib/libc.so.6
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
";
        assert_eq!(
            parse(maps).unwrap(),
            vec![
                Region {
                    start: 0x55d1_c000_0000,
                    end: 0x55d1_c002_1000,
                    kind: 0
                },
                Region {
                    start: 0x7f00_0000_0000,
                    end: 0x7f00_0002_1000,
                    kind: 1
                },
            ]
        );
    }

    #[test]
    fn this_process_has_a_heap() {
        let _block = vec![0u8; 1 << 16];
        let regions = heap_regions().expect("/proc/self/maps readable");
        assert!(!regions.is_empty());
    }
}
