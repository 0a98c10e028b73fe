//! The module list: one framehop module per loaded ELF object that has a `PT_GNU_EH_FRAME`,
//! with its unwind sections given to framehop as slices of the mapped image.
//!
//! Published lock-free: an immutable snapshot behind an `AtomicPtr`, replaced wholesale by
//! [`modules_changed`] and never freed.

use core::ffi::{c_int, c_void, CStr};
use core::ops::Range;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use framehop::x86_64::UnwinderX86_64;
use framehop::{ExplicitModuleSectionInfo, Module, MustNotAllocateDuringUnwind, Unwinder as _};

/// Section data: slices of the loaded images, valid while the module stays mapped.
type Data = &'static [u8];

/// The framehop unwinder type used by the fast path.
pub(crate) type Unwinder = UnwinderX86_64<Data, MustNotAllocateDuringUnwind>;

/// One immutable snapshot of the loaded modules.
pub(crate) struct ModuleList {
    /// Build order: a snapshot only replaces one with a lower `seq`.
    seq: u64,
    /// framehop's view of the snapshot.
    pub(crate) unwinder: Unwinder,
    /// Address ranges of the modules in `unwinder`.
    pub(crate) ranges: Vec<Range<u64>>,
}

impl ModuleList {
    /// True when `addr` lies in a module: it may be a return address.
    pub(crate) fn is_code(&self, addr: u64) -> bool {
        self.ranges.iter().any(|r| r.contains(&addr))
    }
}

/// What `dl_iterate_phdr`'s callback fills in.
struct Builder {
    unwinder: Unwinder,
    ranges: Vec<Range<u64>>,
}

/// The published snapshot; null until the first build. Never freed once published.
static CURRENT: AtomicPtr<ModuleList> = AtomicPtr::new(ptr::null_mut());
/// Set by the thread that claims the lazy first build.
static FIRST_BUILD_CLAIMED: AtomicBool = AtomicBool::new(false);
/// Source of `ModuleList::seq`.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Call after `dlopen`/`dlclose`: the module list is rebuilt (`dl_iterate_phdr`) and swapped
/// in atomically.
///
/// Allocates (the new list) and takes the dynamic loader's lock for the duration of
/// `dl_iterate_phdr`; the previous list is leaked, because a concurrent unwinder may still be
/// reading it. Safe to call from several threads at once: the list built last wins.
pub fn modules_changed() {
    publish(build());
}

/// Changes whenever a module list is built: memoized walks from an older
/// generation are not trusted.
#[inline]
pub(crate) fn generation() -> u64 {
    SEQ.load(Ordering::Acquire)
}

/// The current snapshot, building the first one if nobody has yet. `None` while another
/// thread is doing the first build.
#[inline]
pub(crate) fn current() -> Option<&'static ModuleList> {
    let p = CURRENT.load(Ordering::Acquire);
    if p.is_null() {
        return first_build();
    }
    // SAFETY: non-null values of CURRENT come from `Box::into_raw` in `publish` and are never
    // freed or mutated afterwards, so they are valid shared references for 'static.
    Some(unsafe { &*p })
}

#[cold]
#[inline(never)]
fn first_build() -> Option<&'static ModuleList> {
    if !FIRST_BUILD_CLAIMED.swap(true, Ordering::AcqRel) {
        publish(build());
    }
    let p = CURRENT.load(Ordering::Acquire);
    // SAFETY: as in `current`: published pointers stay valid and immutable forever.
    unsafe { p.as_ref() }
}

/// Swaps `list` in unless a list built later is already published.
fn publish(list: Box<ModuleList>) {
    let seq = list.seq;
    let new = Box::into_raw(list);
    let mut cur = CURRENT.load(Ordering::Acquire);
    loop {
        // SAFETY: published pointers stay valid and immutable forever.
        if let Some(cur_list) = unsafe { cur.as_ref() } {
            if cur_list.seq > seq {
                // SAFETY: `new` came from `Box::into_raw` above and was never published.
                drop(unsafe { Box::from_raw(new) });
                return;
            }
        }
        match CURRENT.compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire) {
            // The old list is deliberately leaked: concurrent unwinders may hold it.
            Ok(_) => return,
            Err(actual) => cur = actual,
        }
    }
}

/// Builds a snapshot of the currently loaded modules.
fn build() -> Box<ModuleList> {
    let seq = SEQ.fetch_add(1, Ordering::SeqCst) + 1;
    let mut builder = Builder {
        unwinder: Unwinder::new(),
        ranges: Vec::new(),
    };
    // SAFETY: `phdr_callback` matches the callback ABI and only uses `data` as the
    // `&mut Builder` passed here, which outlives the call.
    unsafe {
        libc::dl_iterate_phdr(Some(phdr_callback), (&raw mut builder).cast::<c_void>());
    }
    Box::new(ModuleList {
        seq,
        unwinder: builder.unwinder,
        ranges: builder.ranges,
    })
}

unsafe extern "C" fn phdr_callback(
    info: *mut libc::dl_phdr_info,
    _size: usize,
    data: *mut c_void,
) -> c_int {
    // SAFETY: glibc passes a valid `dl_phdr_info` whose `dlpi_phdr` points to `dlpi_phnum`
    // program headers of an object that stays mapped while the loader lock is held (we are
    // inside dl_iterate_phdr); `data` is the `&mut Builder` from `build`.
    let (info, builder) = unsafe { (&*info, &mut *data.cast::<Builder>()) };
    let phdrs: &[libc::Elf64_Phdr] = if info.dlpi_phdr.is_null() || info.dlpi_phnum == 0 {
        &[]
    } else {
        // SAFETY: see above.
        unsafe { core::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    if let Some(module) = module_for(info.dlpi_addr, phdrs, info.dlpi_name) {
        builder.ranges.push(module.avma_range());
        builder.unwinder.add_module(module);
    }
    0
}

/// Builds the framehop module of one loaded object, if it has usable unwind info.
fn module_for(
    bias: u64,
    phdrs: &[libc::Elf64_Phdr],
    name: *const libc::c_char,
) -> Option<Module<Data>> {
    let mut text: Option<Range<u64>> = None;
    let mut hdr_phdr = None;
    for ph in phdrs {
        if ph.p_type == libc::PT_LOAD && ph.p_flags & libc::PF_X != 0 {
            let end = ph.p_vaddr.checked_add(ph.p_memsz)?;
            text = Some(match text {
                None => ph.p_vaddr..end,
                Some(r) => r.start.min(ph.p_vaddr)..r.end.max(end),
            });
        } else if ph.p_type == libc::PT_GNU_EH_FRAME {
            hdr_phdr = Some(ph);
        }
    }
    let text = text?;
    let hdr_phdr = hdr_phdr?;

    // .eh_frame_hdr: version 1, eh_frame_ptr encoding, fde_count encoding, table encoding,
    // then the encoded eh_frame_ptr.
    let hdr_svma = hdr_phdr.p_vaddr;
    let hdr_avma = bias.wrapping_add(hdr_svma);
    let hdr_len = usize::try_from(hdr_phdr.p_memsz).ok()?;
    if hdr_len < 4 || !is_mapped_in_load(phdrs, hdr_svma, hdr_phdr.p_memsz) {
        return None;
    }
    // SAFETY: the range lies inside a PT_LOAD segment of an object that is mapped (we are in
    // dl_iterate_phdr); it stays mapped until dlclose (see crate docs).
    let hdr = unsafe { mapped_bytes(hdr_avma, hdr_len) };
    if hdr[0] != 1 {
        return None;
    }
    let eh_frame_avma =
        decode_eh_frame_ptr(hdr[1], &hdr[4..], hdr_avma.wrapping_add(4), hdr_avma, bias)?;
    let eh_frame_svma = eh_frame_avma.wrapping_sub(bias);
    // .eh_frame's size is not recorded in the headers: bound it by its PT_LOAD segment.
    // gimli only reads at the offsets the hdr table points to.
    let seg = phdrs.iter().find(|ph| {
        ph.p_type == libc::PT_LOAD
            && ph.p_vaddr <= eh_frame_svma
            && eh_frame_svma < ph.p_vaddr.saturating_add(ph.p_memsz)
    })?;
    let eh_frame_len = usize::try_from(seg.p_vaddr + seg.p_memsz - eh_frame_svma).ok()?;
    // SAFETY: as for `hdr`: the range lies inside a mapped PT_LOAD segment.
    let eh_frame = unsafe { mapped_bytes(eh_frame_avma, eh_frame_len) };

    let name = if name.is_null() {
        String::new()
    } else {
        // SAFETY: glibc's dlpi_name is a NUL-terminated string valid during the callback.
        unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned()
    };
    let avma = bias.wrapping_add(text.start)..bias.wrapping_add(text.end);
    if avma.start >= avma.end {
        return None;
    }
    let section_info = ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: Some(text),
        eh_frame_svma: Some(eh_frame_svma..eh_frame_svma + eh_frame_len as u64),
        eh_frame: Some(eh_frame),
        eh_frame_hdr_svma: Some(hdr_svma..hdr_svma + hdr_len as u64),
        eh_frame_hdr: Some(hdr),
        ..Default::default()
    };
    Some(Module::new(name, avma, bias, section_info))
}

/// Whether `[svma, svma + len)` lies inside one PT_LOAD segment.
fn is_mapped_in_load(phdrs: &[libc::Elf64_Phdr], svma: u64, len: u64) -> bool {
    let Some(end) = svma.checked_add(len) else {
        return false;
    };
    phdrs.iter().any(|ph| {
        ph.p_type == libc::PT_LOAD
            && ph.p_vaddr <= svma
            && end <= ph.p_vaddr.saturating_add(ph.p_memsz)
    })
}

/// Decodes `.eh_frame_hdr`'s `eh_frame_ptr` (DWARF EH pointer encoding `enc`, value at the
/// start of `bytes`, which lives at address `field_avma`) into an address in memory.
fn decode_eh_frame_ptr(
    enc: u8,
    bytes: &[u8],
    field_avma: u64,
    hdr_avma: u64,
    bias: u64,
) -> Option<u64> {
    fn take<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
        bytes.get(..N)?.try_into().ok()
    }
    let value = match enc & 0x0f {
        0x00 | 0x04 => u64::from_le_bytes(take::<8>(bytes)?),
        0x0c => i64::from_le_bytes(take::<8>(bytes)?) as u64,
        0x02 => u64::from(u16::from_le_bytes(take::<2>(bytes)?)),
        0x0a => i64::from(i16::from_le_bytes(take::<2>(bytes)?)) as u64,
        0x03 => u64::from(u32::from_le_bytes(take::<4>(bytes)?)),
        0x0b => i64::from(i32::from_le_bytes(take::<4>(bytes)?)) as u64,
        _ => return None,
    };
    match enc & 0xf0 {
        // DW_EH_PE_absptr: a link-time address.
        0x00 => Some(bias.wrapping_add(value)),
        // DW_EH_PE_pcrel
        0x10 => Some(field_avma.wrapping_add(value)),
        // DW_EH_PE_datarel: relative to the start of .eh_frame_hdr.
        0x30 => Some(hdr_avma.wrapping_add(value)),
        _ => None,
    }
}

/// A `'static` byte slice over mapped module memory.
///
/// # Safety
/// `[avma, avma + len)` must be readable memory of a loaded object, and must stay mapped for
/// as long as the slice is used (modules are used until the next `modules_changed`).
unsafe fn mapped_bytes(avma: u64, len: usize) -> &'static [u8] {
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(avma as *const u8, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_eh_frame_ptr_encodings() {
        // pcrel | sdata4, the encoding every GNU toolchain emits.
        let b = (-0x40i32).to_le_bytes();
        assert_eq!(
            decode_eh_frame_ptr(0x1b, &b, 0x1004, 0x1000, 0),
            Some(0x1004 - 0x40)
        );
        // absptr | udata8: relocated by the load bias.
        let b = 0x2000u64.to_le_bytes();
        assert_eq!(
            decode_eh_frame_ptr(0x00, &b, 0x1004, 0x1000, 0x7000_0000),
            Some(0x7000_2000)
        );
        // datarel | udata4
        let b = 0x80u32.to_le_bytes();
        assert_eq!(
            decode_eh_frame_ptr(0x33, &b, 0x1004, 0x1000, 0),
            Some(0x1080)
        );
        // omit / indirect / truncated
        assert_eq!(decode_eh_frame_ptr(0xff, &b, 0, 0, 0), None);
        assert_eq!(decode_eh_frame_ptr(0x9b, &b, 0, 0, 0), None);
        assert_eq!(decode_eh_frame_ptr(0x1b, &b[..2], 0, 0, 0), None);
    }

    #[test]
    fn finds_the_loaded_modules() {
        modules_changed();
        let list = current().expect("published");
        let covered = |addr: u64| list.ranges.iter().any(|r| r.contains(&addr));
        // The test executable, libc and libgcc_s all carry PT_GNU_EH_FRAME.
        assert!(covered(finds_the_loaded_modules as *const () as u64));
        assert!(covered(libc::qsort as *const () as u64));
        assert!(covered(libc::malloc as *const () as u64));
        // So does the vdso.
        // SAFETY: getauxval has no preconditions.
        let vdso = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
        if vdso != 0 {
            assert!(list
                .ranges
                .iter()
                .any(|r| r.start >= vdso && r.start < vdso + 0x10000));
        }
    }
}
