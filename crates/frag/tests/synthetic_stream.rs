//! Every allocator model replays a synthetic stream of 100,000 requests and
//! accounts for it exactly: the allocations and frees it was given, and the
//! most requested bytes live at once, as the generator counted them.
//! (Replay speed is measured by `cargo bench -p memtrace-frag`.)

use memtrace_frag::{replay, Config, PolicyKind};

mod stream;
use stream::stream;

#[test]
fn every_model_accounts_for_the_stream_exactly() {
    let (s, expected) = stream(100_000);
    assert_eq!(expected.allocs + expected.frees, 100_000);
    for policy in PolicyKind::ALL {
        let r = replay(&s, policy, &Config::default());
        let name = policy.name();
        assert_eq!(r.n_allocs, expected.allocs, "{name}");
        assert_eq!(r.n_frees, expected.frees, "{name}");
        assert_eq!(r.peak_live, expected.peak_live, "{name}");
        assert!(r.peak_footprint >= r.peak_live, "{name}");
    }
}
