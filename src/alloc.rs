//! The extension's Rust heap. Loro trusts counts read from its input when it reserves memory
//! (`Vec::with_capacity(n)` with n from the blob), and on stable Rust a failed allocation
//! aborts the process: a corrupt update could take the backend, and with it every session of
//! the cluster, down. Requests of 1 GiB or more are therefore served by lazily committed
//! anonymous mappings (`MAP_NORESERVE`): reserving costs address space, not memory, so such a
//! blob fails to decode with an ERROR once its bytes run out. Memory that is really written
//! is still real (and bounded by the input size in that case).
//!
//! Smaller requests go to mimalloc. Loro allocates and frees many small objects per write;
//! glibc's malloc spent about a tenth of a busy backend's time on them (`_int_malloc`,
//! `malloc_consolidate`), and with mimalloc 8 writers on 2 cores make 10–17% more writes per
//! second. Only the extension's Rust heap changes: Postgres' own `malloc`/`palloc` are
//! untouched. `local_dynamic_tls`, because Postgres loads the library with `dlopen`.

use std::alloc::{GlobalAlloc, Layout};

use mimalloc::MiMalloc;

const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct ExtensionAllocator;

fn is_huge(layout: Layout) -> bool {
    layout.size() >= HUGE && layout.align() <= PAGE
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping with no address hint.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        ptr.cast()
    }
}

unsafe impl GlobalAlloc for ExtensionAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout) {
            unsafe { map(layout.size()) } // anonymous mappings are zero-filled
        } else {
            unsafe { MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout) {
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
        } else {
            unsafe { MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if !is_huge(layout) && !is_huge(new_layout) {
            return unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}
