//! The runtime a `no_std` Rust component needs on `wasm32-wasip2`.
//!
//! Rust's standard library for that target imports `wasi:cli/environment`,
//! `exit` and `terminal-*`, which lie outside the `wasi:http/proxy` world, so
//! a component built with it cannot run on hosts that link only that world.
//! Our guests are `no_std` instead and take from here the four things std
//! would have given them; none of them imports anything.
//!
//! Link it with `use guest_rt as _;`. Off wasm it is empty, so the guests'
//! pure logic builds and tests natively with std.

#![no_std]

/// `expect` without the message: an error traps at once, as a panic does
/// here anyway (the panic handler traps and prints nothing), but without
/// the formatting code and `Debug` impls that an `expect` call pulls into
/// the component, and into every instance's function table and data.
pub trait OrTrap<T> {
    /// The value, or a trap.
    fn or_trap(self) -> T;
}

impl<T, E> OrTrap<T> for Result<T, E> {
    fn or_trap(self) -> T {
        match self {
            Ok(value) => value,
            Err(_) => trap(),
        }
    }
}

/// Ends the guest's call with a trap (a panic off wasm, for tests).
#[cold]
fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    panic!("trap");
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    extern crate alloc;

    use alloc::alloc::{GlobalAlloc, Layout};
    use core::cell::Cell;

    /// Heap allocations: a bump allocator. See [`Bump`].
    #[global_allocator]
    static ALLOCATOR: Bump = Bump {
        started: Cell::new(false),
        next: Cell::new(0),
        end: Cell::new(0),
    };

    const PAGE: usize = 65536;

    unsafe extern "C" {
        /// Where the linker put the end of static data: the heap starts here.
        static __heap_base: u8;
    }

    /// A bump allocator for instances that live for one request.
    ///
    /// It hands out the free part of the initial linear memory first and
    /// grows memory only when that runs out. The greeter's allocations fit
    /// in its initial memory (see `.cargo/config.toml`), so an instance
    /// never executes `memory.grow`; each grow would cost the host two
    /// `mprotect` calls per request (grow now, shrink back before the next
    /// instance), measured at several percent of the whole request. Freed
    /// memory is reclaimed only when it is the latest allocation: the
    /// instance is thrown away after one request, which is the design this
    /// allocator is for. A guest that keeps allocating hits the host's
    /// memory limit and traps.
    struct Bump {
        started: Cell<bool>,
        next: Cell<usize>,
        /// End of linear memory, in bytes (u64: 4 GiB does not fit in usize).
        end: Cell<u64>,
    }

    // SAFETY: wasm32-wasip2 components are single-threaded.
    unsafe impl Sync for Bump {}

    impl Bump {
        fn take(&self, layout: Layout) -> Option<usize> {
            if !self.started.get() {
                self.started.set(true);
                self.next.set(core::ptr::addr_of!(__heap_base) as usize);
                self.end
                    .set(core::arch::wasm32::memory_size(0) as u64 * PAGE as u64);
            }
            let start = self.next.get().checked_add(layout.align() - 1)? & !(layout.align() - 1);
            let end = start.checked_add(layout.size())?;
            if end as u64 > self.end.get() {
                let pages = (end as u64 - self.end.get()).div_ceil(PAGE as u64) as usize;
                let before = core::arch::wasm32::memory_grow(0, pages);
                if before == usize::MAX {
                    return None;
                }
                self.end.set((before as u64 + pages as u64) * PAGE as u64);
            }
            self.next.set(end);
            Some(start)
        }
    }

    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.take(layout)
                .map_or(core::ptr::null_mut(), |at| at as *mut u8)
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            if ptr as usize + layout.size() == self.next.get() {
                self.next.set(ptr as usize);
            }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let at = ptr as usize;
            // The latest allocation grows (or shrinks) in place.
            if at + layout.size() == self.next.get() {
                self.next.set(at);
                let grown = Layout::from_size_align(new_size, layout.align()).ok();
                if let Some(new) = grown.and_then(|grown| self.take(grown)) {
                    return new as *mut u8; // `take` returned `at` itself
                }
                self.next.set(at + layout.size());
                return core::ptr::null_mut();
            }
            // SAFETY: forwarded under the caller's guarantees.
            unsafe {
                let new = Layout::from_size_align_unchecked(new_size, layout.align());
                let fresh = self.alloc(new);
                if !fresh.is_null() {
                    core::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                }
                fresh
            }
        }
    }

    /// A panic traps; the host reports the trap and answers 500.
    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
        core::arch::wasm32::unreachable()
    }

    /// The canonical ABI's allocation entry point, through which the host
    /// hands the guest strings and lists. std exports it on `wasm32-wasip2`;
    /// without std we must.
    ///
    /// # Safety
    ///
    /// Called by the host under the canonical ABI's contract: `old_ptr` and
    /// `old_len` describe a block this function returned (or are zero), and
    /// `align` is a power of two.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn cabi_realloc(
        old_ptr: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        let (Ok(old), Ok(new)) = (
            Layout::from_size_align(old_len, align),
            Layout::from_size_align(new_len, align),
        ) else {
            core::arch::wasm32::unreachable()
        };
        // SAFETY: when `old_len` is non-zero the caller hands back a block of
        // layout `old` from this allocator; zero sizes never reach it.
        let ptr = unsafe {
            match (old_len, new_len) {
                // A zero-sized block: any aligned, non-null address will do.
                (_, 0) => {
                    if old_len != 0 {
                        alloc::alloc::dealloc(old_ptr, old);
                    }
                    return align as *mut u8;
                }
                (0, _) => alloc::alloc::alloc(new),
                _ => alloc::alloc::realloc(old_ptr, old, new_len),
            }
        };
        if ptr.is_null() {
            core::arch::wasm32::unreachable();
        }
        ptr
    }

    // `memcpy`, `memcmp` and friends: on this target the compiler expects
    // them from the target's libc (wasi-libc, shipped with the target). Only
    // these pure functions are linked in; they import nothing.
    #[link(name = "c")]
    unsafe extern "C" {}
}
