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

#[cfg(target_arch = "wasm32")]
mod wasm {
    extern crate alloc;

    use alloc::alloc::Layout;

    /// Heap allocations: the allocator Rust's own wasm targets are built on.
    #[global_allocator]
    static ALLOCATOR: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

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
        if old_len == 0 && new_len == 0 {
            // A zero-sized block: any aligned, non-null address will do.
            return align as *mut u8;
        }
        // SAFETY: the caller guarantees a valid alignment and, when
        // `old_len` is non-zero, a block of that layout from this allocator.
        let ptr = unsafe {
            if old_len == 0 {
                alloc::alloc::alloc(Layout::from_size_align_unchecked(new_len, align))
            } else {
                let old = Layout::from_size_align_unchecked(old_len, align);
                alloc::alloc::realloc(old_ptr, old, new_len)
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
