//! The running executable's build-id, read from its own headers in memory (no file is opened and
//! no lock is taken, so a forked child may compute it too):
//!
//! * Linux: the ELF GNU build-id note (`NT_GNU_BUILD_ID`), found through the program headers
//!   (`getauxval` reads a table the kernel handed the process);
//! * macOS: the Mach-O `LC_UUID` load command of the main image (`_dyld_get_image_header(0)`);
//! * Windows: the PE CodeView record's signature and age (`RSDS`, what a PDB is matched by),
//!   found through the debug directory of the module `GetModuleHandleW(NULL)` names. MSVC's
//!   linker writes one with `/DEBUG`; GNU ld with `--build-id` (this workspace's
//!   `.cargo/config.toml` asks for it).
//!
//! The pickle crate's only calls into the OS.

/// The build-id of the running executable: the bytes the linker derived from the binary's
/// contents (the ELF build-id note, the Mach-O UUID, the PE CodeView signature and age). It is
/// the same in every copy of the file (on this host or another) and different in every other
/// build. `None` where the executable has none (linked with `--build-id=none`, or on Windows
/// without `/DEBUG` or `--build-id`); [`fingerprint`](crate::fingerprint) then hashes the
/// executable's file instead.
///
/// ```
/// if let Some(id) = multiproc::pickle::build_id() {
///     assert!(!id.is_empty());
///     assert_eq!(multiproc::pickle::build_id(), Some(id)); // the same bytes every time
/// }
/// ```
pub fn build_id() -> Option<&'static [u8]> {
    imp::build_id()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    #[cfg(target_pointer_width = "32")]
    use libc::Elf32_Phdr as Phdr;
    #[cfg(target_pointer_width = "64")]
    use libc::Elf64_Phdr as Phdr;

    const PT_NOTE: u32 = 4;
    const PT_PHDR: u32 = 6;
    const NT_GNU_BUILD_ID: u32 = 3;

    pub(super) fn build_id() -> Option<&'static [u8]> {
        // SAFETY: getauxval only reads the auxiliary vector; 0 means "not there".
        let (at, num) = unsafe {
            (
                libc::getauxval(libc::AT_PHDR) as usize,
                libc::getauxval(libc::AT_PHNUM) as usize,
            )
        };
        if at == 0 || num == 0 || at % std::mem::align_of::<Phdr>() != 0 {
            return None;
        }
        // SAFETY: the kernel's AT_PHDR/AT_PHNUM describe the executable's program headers,
        // mapped (read-only) for the life of the process.
        let phdrs: &'static [Phdr] = unsafe { std::slice::from_raw_parts(at as *const Phdr, num) };
        // Where the executable was loaded: the headers' address minus where they asked to be.
        let bias = at.wrapping_sub(phdrs.iter().find(|p| p.p_type == PT_PHDR)?.p_vaddr as usize);
        phdrs.iter().filter(|p| p.p_type == PT_NOTE).find_map(|p| {
            let start = bias.wrapping_add(p.p_vaddr as usize);
            // SAFETY: a PT_NOTE segment lies inside a loaded segment of the executable, mapped
            // for the life of the process; `p_memsz` is its size.
            let notes: &'static [u8] =
                unsafe { std::slice::from_raw_parts(start as *const u8, p.p_memsz as usize) };
            find_gnu_build_id(notes, (p.p_align as usize).max(4))
        })
    }

    /// The descriptor of the GNU build-id note among `notes` (entries aligned to `align`).
    fn find_gnu_build_id(notes: &[u8], align: usize) -> Option<&[u8]> {
        let up = |n: usize| n.checked_add(align - 1).map(|n| n & !(align - 1));
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(notes.get(at..at + 4)?.try_into().ok()?))
        };
        let mut at = 0;
        while at + 12 <= notes.len() {
            let (namesz, descsz, kind) =
                (word(at)? as usize, word(at + 4)? as usize, word(at + 8)?);
            let name_at = at + 12;
            let desc_at = name_at.checked_add(up(namesz)?)?;
            let end = desc_at.checked_add(up(descsz)?)?;
            let name = notes.get(name_at..name_at + namesz)?;
            if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
                return notes
                    .get(desc_at..desc_at + descsz)
                    .filter(|d| !d.is_empty());
            }
            at = end;
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::find_gnu_build_id;

        fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
            let mut v = Vec::new();
            v.extend((name.len() as u32).to_ne_bytes());
            v.extend((desc.len() as u32).to_ne_bytes());
            v.extend(kind.to_ne_bytes());
            v.extend(name);
            v.resize(v.len().next_multiple_of(4), 0);
            v.extend(desc);
            v.resize(v.len().next_multiple_of(4), 0);
            v
        }

        #[test]
        fn finds_the_gnu_note_among_others_and_survives_garbage() {
            let mut notes = note(b"GNU\0", 1, &[0; 16]); // ABI tag
            notes.extend(note(b"XYZ\0", 3, &[9; 8])); // type 3 of another owner
            notes.extend(note(b"GNU\0", 3, &[1, 2, 3, 4, 5]));
            assert_eq!(find_gnu_build_id(&notes, 4), Some(&[1, 2, 3, 4, 5][..]));
            assert_eq!(find_gnu_build_id(&notes[..notes.len() - 8], 4), None);
            let mut bad = notes.clone();
            bad[0..4].copy_from_slice(&u32::MAX.to_ne_bytes());
            assert_eq!(find_gnu_build_id(&bad, 4), None);
            assert_eq!(find_gnu_build_id(&[], 4), None);
        }

        #[test]
        fn this_test_binary_has_a_build_id() {
            // The toolchain here links with a build-id (GNU ld and lld via gcc/clang do by
            // default on Linux distributions); if this fails, the fingerprint falls back.
            assert!(super::build_id().is_some_and(|id| id.len() >= 8));
        }
    }
}

#[cfg(target_vendor = "apple")]
mod imp {
    const MH_MAGIC_64: u32 = 0xfeed_facf;
    /// `sizeof(struct mach_header_64)`: magic, cputype, cpusubtype, filetype, ncmds,
    /// sizeofcmds, flags, reserved (eight `u32`s).
    const HEADER: usize = 32;
    const LC_UUID: u32 = 0x1b;

    extern "C" {
        // (libSystem, linked into every program)
        fn _dyld_get_image_header(image_index: u32) -> *const u8;
    }

    pub(super) fn build_id() -> Option<&'static [u8]> {
        // SAFETY: image 0 is the main executable; dyld keeps its header mapped for the life of
        // the process (null if there is none).
        let h = unsafe { _dyld_get_image_header(0) };
        if h.is_null() {
            return None;
        }
        // SAFETY: a mapped Mach-O header is at least `HEADER` bytes.
        let header: &'static [u8] = unsafe { std::slice::from_raw_parts(h, HEADER) };
        let word = |at: usize| u32::from_ne_bytes(header[at..at + 4].try_into().expect("4 bytes"));
        if word(0) != MH_MAGIC_64 {
            return None;
        }
        // SAFETY: the load commands follow the header, `sizeofcmds` bytes, mapped with it.
        let cmds: &'static [u8] =
            unsafe { std::slice::from_raw_parts(h.add(HEADER), word(20) as usize) };
        find_uuid(cmds, word(16) as usize)
    }

    /// The UUID among `n` load commands.
    fn find_uuid(cmds: &[u8], n: usize) -> Option<&[u8]> {
        let word = |at: usize| -> Option<u32> {
            Some(u32::from_ne_bytes(
                cmds.get(at..at.checked_add(4)?)?.try_into().ok()?,
            ))
        };
        let mut at = 0usize;
        for _ in 0..n {
            let (cmd, size) = (word(at)?, word(at + 4)? as usize);
            if size < 8 {
                return None;
            }
            if cmd == LC_UUID && size >= 24 {
                return cmds.get(at + 8..at + 24);
            }
            at = at.checked_add(size)?;
        }
        None
    }
}

#[cfg(windows)]
mod imp {
    #[link(name = "kernel32")]
    extern "system" {
        fn GetModuleHandleW(name: *const u16) -> *mut std::ffi::c_void;
    }

    pub(super) fn build_id() -> Option<&'static [u8]> {
        // SAFETY: a null name asks for the executable's own module (not to be freed).
        let base = unsafe { GetModuleHandleW(std::ptr::null()) }
            .cast::<u8>()
            .cast_const();
        if base.is_null() {
            return None;
        }
        // SAFETY: the loader maps the image's headers (at least a page) at its base for the
        // life of the process.
        let page: &'static [u8] = unsafe { std::slice::from_raw_parts(base, 4096) };
        let (size_of_image, debug) = super::pe::headers(page)?;
        let (rva, len) = super::pe::codeview_at(debug, |rva, len| {
            // SAFETY: the debug directory lies in a section of the image (checked against
            // `SizeOfImage`), mapped readable for the life of the process.
            (rva.checked_add(len)? <= size_of_image)
                .then(|| unsafe { std::slice::from_raw_parts(base.add(rva), len) })
        })?;
        if rva.checked_add(len)? > size_of_image {
            return None;
        }
        // SAFETY: as above: the CodeView record is in the image, checked against its size.
        let record: &'static [u8] = unsafe { std::slice::from_raw_parts(base.add(rva), len) };
        super::pe::rsds_signature(record)
    }
}

/// The PE parsing of the Windows build-id, on bytes (bounds-checked everywhere; tested on every
/// platform).
#[cfg(any(windows, test))]
mod pe {
    fn u16_at(b: &[u8], at: usize) -> Option<usize> {
        Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?) as usize)
    }

    fn u32_at(b: &[u8], at: usize) -> Option<usize> {
        Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?) as usize)
    }

    /// From the first bytes of a mapped image: `SizeOfImage` and the debug directory's
    /// `(rva, size)`.
    pub(super) fn headers(page: &[u8]) -> Option<(usize, (usize, usize))> {
        if page.get(..2)? != b"MZ" {
            return None;
        }
        let nt = u32_at(page, 0x3c)?;
        if page.get(nt..nt.checked_add(4)?)? != b"PE\0\0" {
            return None;
        }
        let opt = nt + 24;
        let (dirs_count_at, dirs_at) = match u16_at(page, opt)? {
            0x20b => (opt + 108, opt + 112), // PE32+
            0x10b => (opt + 92, opt + 96),   // PE32
            _ => return None,
        };
        let size_of_image = u32_at(page, opt + 56)?;
        const DEBUG: usize = 6;
        if u32_at(page, dirs_count_at)? <= DEBUG {
            return None;
        }
        let at = dirs_at + DEBUG * 8;
        Some((size_of_image, (u32_at(page, at)?, u32_at(page, at + 4)?)))
    }

    /// The `(rva, size)` of the first CodeView record the debug directory `(rva, size)` lists;
    /// `read(rva, len)` gives the directory's bytes.
    pub(super) fn codeview_at<'a>(
        (rva, size): (usize, usize),
        read: impl FnOnce(usize, usize) -> Option<&'a [u8]>,
    ) -> Option<(usize, usize)> {
        const ENTRY: usize = 28;
        const CODEVIEW: usize = 2;
        if rva == 0 || !(ENTRY..=64 * ENTRY).contains(&size) {
            return None;
        }
        let dir = read(rva, size)?;
        dir.chunks_exact(ENTRY)
            .find_map(|e| (u32_at(e, 12)? == CODEVIEW).then_some((u32_at(e, 20)?, u32_at(e, 16)?)))
    }

    /// A CodeView `RSDS` record's signature (a GUID) and age: 20 bytes.
    pub(super) fn rsds_signature(record: &[u8]) -> Option<&[u8]> {
        if record.get(..4)? != b"RSDS" {
            return None;
        }
        record.get(4..24)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// A PE32+ image's first bytes with a debug directory at 0x200 listing a CodeView
        /// record at 0x300.
        fn image() -> Vec<u8> {
            let mut b = vec![0u8; 0x400];
            b[..2].copy_from_slice(b"MZ");
            b[0x3c..0x40].copy_from_slice(&0x80u32.to_le_bytes());
            b[0x80..0x84].copy_from_slice(b"PE\0\0");
            let opt = 0x80 + 24;
            b[opt..opt + 2].copy_from_slice(&0x20bu16.to_le_bytes());
            b[opt + 56..opt + 60].copy_from_slice(&0x400u32.to_le_bytes());
            b[opt + 108..opt + 112].copy_from_slice(&16u32.to_le_bytes());
            let d = opt + 112 + 6 * 8;
            b[d..d + 4].copy_from_slice(&0x200u32.to_le_bytes());
            b[d + 4..d + 8].copy_from_slice(&56u32.to_le_bytes());
            // two entries: a POGO one (13), then CodeView (2) at 0x300, 24 bytes
            b[0x200 + 12..0x200 + 16].copy_from_slice(&13u32.to_le_bytes());
            let e = 0x200 + 28;
            b[e + 12..e + 16].copy_from_slice(&2u32.to_le_bytes());
            b[e + 16..e + 20].copy_from_slice(&24u32.to_le_bytes());
            b[e + 20..e + 24].copy_from_slice(&0x300u32.to_le_bytes());
            b[0x300..0x304].copy_from_slice(b"RSDS");
            for (i, x) in b[0x304..0x318].iter_mut().enumerate() {
                *x = i as u8 + 1;
            }
            b
        }

        fn id(b: &[u8]) -> Option<Vec<u8>> {
            let (size, debug) = headers(b)?;
            let (rva, len) = codeview_at(debug, |rva, len| {
                (rva + len <= size).then(|| b.get(rva..rva + len)).flatten()
            })?;
            rsds_signature(b.get(rva..rva.checked_add(len)?)?).map(<[u8]>::to_vec)
        }

        #[test]
        fn finds_the_codeview_signature_and_survives_garbage() {
            let b = image();
            assert_eq!(id(&b), Some((1..=20).collect::<Vec<u8>>()));
            for cut in [0, 1, 0x40, 0x90, 0x200, 0x230, 0x310] {
                assert_eq!(id(&b[..cut]), None, "cut at {cut}");
            }
            let mut bad = b.clone();
            bad[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
            assert_eq!(id(&bad), None);
            let mut bad = b.clone();
            bad[0x300] = b'X';
            assert_eq!(id(&bad), None);
        }
    }
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_vendor = "apple",
    windows
)))]
mod imp {
    pub(super) fn build_id() -> Option<&'static [u8]> {
        None
    }
}
