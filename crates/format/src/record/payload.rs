//! The payloads of the single records: header, module, phase, resource
//! sample, trailer.

use super::{Header, Module, Phase, RecorderKind, ResourceSample, Segment, TickSource, Trailer};
use crate::codec::{put_bytes, put_str, put_u64, Cursor};
use crate::error::DecodeError;

impl Header {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.pid.into());
        put_u64(out, self.ppid.into());
        put_str(out, &self.exe);
        put_u64(out, self.cmdline.len() as u64);
        for arg in &self.cmdline {
            put_str(out, arg);
        }
        put_u64(out, self.start_unix_ns);
        put_u64(out, self.page_size.into());
        out.push(self.pointer_size);
        out.push(match self.ticks {
            TickSource::Tsc => 0,
            TickSource::MonotonicNs => 1,
        });
        out.push(match self.recorder {
            RecorderKind::Preload => 0,
            RecorderKind::RustAllocator => 1,
        });
        out.push(self.latency_measured as u8);
        put_u64(out, self.family);
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self, DecodeError> {
        let pid = cur.u32()?;
        let ppid = cur.u32()?;
        let exe = cur.string()?;
        let n_args = cur.count(1)?;
        let cmdline = (0..n_args)
            .map(|_| cur.string())
            .collect::<Result<_, _>>()?;
        Ok(Header {
            pid,
            ppid,
            exe,
            cmdline,
            start_unix_ns: cur.u64()?,
            page_size: cur.u32()?,
            pointer_size: cur.u8()?,
            ticks: match cur.u8()? {
                0 => TickSource::Tsc,
                _ => TickSource::MonotonicNs,
            },
            recorder: match cur.u8()? {
                0 => RecorderKind::Preload,
                _ => RecorderKind::RustAllocator,
            },
            latency_measured: cur.u8()? != 0,
            // Added in version 3; absent before.
            family: if cur.is_empty() { 0 } else { cur.u64()? },
        })
    }
}

impl Module {
    pub(crate) fn encode(&self, ts: u64, out: &mut Vec<u8>) {
        put_u64(out, ts);
        put_str(out, &self.path);
        put_bytes(out, self.build_id.as_deref().unwrap_or(&[]));
        put_u64(out, self.load_bias);
        put_u64(out, self.segments.len() as u64);
        for s in &self.segments {
            put_u64(out, s.vaddr);
            put_u64(out, s.memsz);
            put_u64(out, s.flags.into());
        }
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<(u64, Self), DecodeError> {
        let ts = cur.u64()?;
        let path = cur.string()?;
        let build_id = cur.bytes()?;
        let load_bias = cur.u64()?;
        let n = cur.count(3)?;
        let mut segments = Vec::with_capacity(n);
        for _ in 0..n {
            segments.push(Segment {
                vaddr: cur.u64()?,
                memsz: cur.u64()?,
                flags: cur.u32()?,
            });
        }
        Ok((
            ts,
            Module {
                path,
                build_id: (!build_id.is_empty()).then(|| build_id.to_vec()),
                load_bias,
                segments,
            },
        ))
    }
}

impl Phase {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        put_u64(out, self.ts);
        put_u64(out, self.tid.into());
        put_str(out, &self.name);
        put_u64(out, self.counters.len() as u64);
        for (name, value) in &self.counters {
            put_str(out, name);
            put_u64(out, *value);
        }
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self, DecodeError> {
        let ts = cur.u64()?;
        let tid = cur.u32()?;
        let name = cur.string()?;
        let n = cur.count(2)?;
        let mut counters = Vec::with_capacity(n);
        for _ in 0..n {
            counters.push((cur.string()?, cur.u64()?));
        }
        Ok(Phase {
            ts,
            tid,
            name,
            counters,
        })
    }
}

impl Trailer {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.ts,
            self.n_events,
            self.n_stack_nodes,
            self.n_threads,
            self.n_dropped,
        ] {
            put_u64(out, v);
        }
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self, DecodeError> {
        Ok(Trailer {
            ts: cur.u64()?,
            n_events: cur.u64()?,
            n_stack_nodes: cur.u64()?,
            n_threads: cur.u64()?,
            n_dropped: cur.u64()?,
        })
    }
}

impl ResourceSample {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.ts,
            self.rss_bytes,
            self.user_ns,
            self.system_ns,
            self.minor_faults,
            self.major_faults,
        ] {
            put_u64(out, v);
        }
    }

    pub(crate) fn decode(cur: &mut Cursor) -> Result<Self, DecodeError> {
        Ok(ResourceSample {
            ts: cur.u64()?,
            rss_bytes: cur.u64()?,
            user_ns: cur.u64()?,
            system_ns: cur.u64()?,
            minor_faults: cur.u64()?,
            major_faults: cur.u64()?,
        })
    }
}
