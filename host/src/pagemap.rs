//! Whether this kernel's `PAGEMAP_SCAN` can tell the pages an instance wrote
//! from the ones it never touched, which decides how a freed memory slot is
//! reset (`runtime.rs`).
//!
//! wasmtime 50 resets a slot by asking `PAGEMAP_SCAN` for its `WRITTEN`
//! pages and rewriting those. Some kernels (6.18 on the machine the
//! benchmarks run on) report a page that was never touched as written too,
//! whenever a neighbour within the same page table was: then the scan names
//! every page of the memory, the whole of it is rewritten anyway, and the
//! system call is pure cost (docs/performance.md). This probe asks the
//! kernel once, at start, on a private mapping of its own.

use std::fs::File;
use std::os::fd::AsRawFd;

/// `struct pm_scan_arg` from `<linux/fs.h>` (Linux 6.7).
#[repr(C)]
#[derive(Default)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region` from `<linux/fs.h>`.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug, PartialEq)]
struct Region {
    start: u64,
    end: u64,
    categories: u64,
}

const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: u64 = (3 << 30) | ((size_of::<ScanArg>() as u64) << 16) | (0x66 << 8) | 16;

/// Pages in the probe's mapping: within one page table.
const PAGES: usize = 16;

/// True when `PAGEMAP_SCAN` exists and reports exactly the pages written:
/// in a fresh mapping where one page was written and another only read, it
/// names the written one alone. False where the scan is missing or names
/// untouched pages as well.
pub fn scan_finds_only_written_pages() -> bool {
    probe(&[3, 11], &[7]).is_some_and(|found| found == [3, 11])
}

/// Writes `written` and reads `read` (page numbers) in a fresh anonymous
/// mapping, then returns the pages the scan wasmtime 50 issues reports, or
/// `None` when the kernel has no `PAGEMAP_SCAN`.
fn probe(written: &[usize], read: &[usize]) -> Option<Vec<usize>> {
    let pagemap = File::open("/proc/self/pagemap").ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    let len = PAGES * page;
    // SAFETY: a new private anonymous mapping, unmapped below, used only
    // within this function.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return None;
    }
    let base = base.cast::<u8>();
    // SAFETY: every page touched lies inside the mapping.
    unsafe {
        for &n in written {
            base.add(n * page).write_volatile(1);
        }
        for &n in read {
            base.add(n * page).read_volatile();
        }
    }
    let mut regions = [Region::default(); PAGES];
    let mut arg = ScanArg {
        size: size_of::<ScanArg>() as u64,
        start: base as u64,
        end: base as u64 + len as u64,
        vec: regions.as_mut_ptr() as u64,
        vec_len: PAGES as u64,
        max_pages: PAGES as u64,
        // Written, and neither the shared zero page nor a file's page.
        category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
        category_mask: PAGE_IS_WRITTEN | PAGE_IS_PFNZERO | PAGE_IS_FILE,
        ..ScanArg::default()
    };
    // SAFETY: `arg` is a valid `pm_scan_arg` whose output vector is
    // `regions`, as long as it says; the range is our own mapping.
    let count = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(base.cast(), len) };
    let count = usize::try_from(count).ok()?;
    let pages = regions[..count.min(PAGES)]
        .iter()
        .flat_map(|region| {
            let first = (region.start - base as u64) as usize / page;
            let last = (region.end - base as u64) as usize / page;
            first..last
        })
        .collect();
    Some(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's answer holds for another layout too: where the kernel is
    /// exact, a scan names the written pages and nothing else; where it is
    /// not, it names more than were written.
    #[test]
    fn the_probe_agrees_with_another_scan() {
        let Some(found) = probe(&[0, 5, 6], &[2, 9]) else {
            assert!(!scan_finds_only_written_pages(), "no scan, no exact scan");
            return;
        };
        if scan_finds_only_written_pages() {
            assert_eq!(found, [0, 5, 6]);
        } else {
            assert!(found.len() > 3, "{found:?}");
            for page in [0, 5, 6] {
                assert!(found.contains(&page), "a written page is missed: {found:?}");
            }
        }
        eprintln!(
            "PAGEMAP_SCAN exact: {}; pages named: {found:?}",
            scan_finds_only_written_pages()
        );
    }
}
