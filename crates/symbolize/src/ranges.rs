//! Which module an address belongs to: the sorted, non-overlapping address
//! ranges of the modules' segments, later modules winning overlaps.

/// A module's address range: `[start, end)` belongs to module index `module`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Interval {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) module: usize,
}

/// Inserts `new` into the sorted, non-overlapping `ranges`, trimming
/// existing ranges where they overlap it.
pub(crate) fn insert_interval(ranges: &mut Vec<Interval>, new: Interval) {
    let mut out = Vec::with_capacity(ranges.len() + 2);
    for r in ranges.drain(..) {
        if r.end <= new.start || r.start >= new.end {
            out.push(r);
            continue;
        }
        if r.start < new.start {
            out.push(Interval {
                end: new.start,
                ..r
            });
        }
        if r.end > new.end {
            out.push(Interval {
                start: new.end,
                ..r
            });
        }
    }
    out.push(new);
    out.sort_by_key(|r| r.start);
    *ranges = out;
}

/// The module whose range holds `address`, if any.
pub(crate) fn module_at(ranges: &[Interval], address: u64) -> Option<usize> {
    let i = ranges.partition_point(|r| r.start <= address);
    let range = ranges.get(i.checked_sub(1)?)?;
    (address < range.end).then_some(range.module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_modules_take_over_overlapping_ranges() {
        let mut ranges = Vec::new();
        insert_interval(
            &mut ranges,
            Interval {
                start: 0,
                end: 100,
                module: 0,
            },
        );
        insert_interval(
            &mut ranges,
            Interval {
                start: 200,
                end: 300,
                module: 1,
            },
        );
        insert_interval(
            &mut ranges,
            Interval {
                start: 50,
                end: 250,
                module: 2,
            },
        );
        let got: Vec<_> = ranges.iter().map(|r| (r.start, r.end, r.module)).collect();
        assert_eq!(got, vec![(0, 50, 0), (50, 250, 2), (250, 300, 1)]);
        insert_interval(
            &mut ranges,
            Interval {
                start: 60,
                end: 70,
                module: 3,
            },
        );
        let got: Vec<_> = ranges.iter().map(|r| (r.start, r.end, r.module)).collect();
        assert_eq!(
            got,
            vec![
                (0, 50, 0),
                (50, 60, 2),
                (60, 70, 3),
                (70, 250, 2),
                (250, 300, 1)
            ]
        );
    }
}
