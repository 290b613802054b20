//! The running executable's ELF build-id (the GNU `NT_GNU_BUILD_ID` note), read from its own
//! program headers in memory: no file is opened and no lock is taken (`getauxval` reads a table
//! the kernel handed the process), so a forked child may compute it too. The pickle crate's
//! only calls into libc.

/// The build-id of the running executable: the bytes of its GNU build-id note, which the linker
/// derives from the binary's contents. It is the same in every copy of the file (on this host or
/// another) and different in every other build. `None` where the executable has none (linked
/// with `--build-id=none`) or the platform has no ELF notes.
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

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    pub(super) fn build_id() -> Option<&'static [u8]> {
        None
    }
}
