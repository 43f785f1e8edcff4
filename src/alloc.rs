//! The binaries' global allocator: the system one, keeping a few freed large blocks for
//! reuse.
//!
//! hyper reads each HTTP chunk of a layer into a fresh ~400 KiB buffer, and musl's
//! allocator serves every block over 128 KiB with its own `mmap` and returns it with
//! `munmap` when freed. So every chunk of a download cost about a hundred page faults, each
//! with a page the kernel had to zero: over a sixth of the system time of a 900 MB pull, and
//! far more on virtual machines that hand freed memory back to the host. Keeping up to
//! [`SLOTS`] freed blocks of that size class and giving them out again for the same size
//! keeps those pages mapped and warm; everything else goes straight to the system allocator.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;

/// Blocks of this size range are kept for reuse.
const MIN: usize = 128 * 1024;
const MAX: usize = 1024 * 1024;
/// How many freed blocks are kept: at most 16 MiB, about 7 MiB with hyper's buffers.
const SLOTS: usize = 16;

/// The allocator; `#[global_allocator] static A: Recycling = Recycling;` in a binary.
pub struct Recycling;

/// A kept block: its layout's size and alignment and its address.
#[derive(Clone, Copy)]
struct Block {
    size: usize,
    align: usize,
    addr: usize,
}

/// The kept blocks, in a fixed array: the allocator cannot allocate for its own use.
struct Kept {
    blocks: [Block; SLOTS],
    len: usize,
}

static KEPT: Mutex<Kept> = Mutex::new(Kept {
    blocks: [Block {
        size: 0,
        align: 0,
        addr: 0,
    }; SLOTS],
    len: 0,
});

fn kept_size(layout: Layout) -> bool {
    (MIN..=MAX).contains(&layout.size())
}

/// A kept block of exactly this layout, if there is one.
fn take(layout: Layout) -> Option<*mut u8> {
    let mut kept = KEPT.lock().ok()?;
    let len = kept.len;
    let i = kept.blocks[..len]
        .iter()
        .position(|b| b.size == layout.size() && b.align == layout.align())?;
    let block = kept.blocks[i];
    kept.blocks[i] = kept.blocks[len - 1];
    kept.len -= 1;
    Some(block.addr as *mut u8)
}

/// Keeps a freed block; `false` when there is no room.
fn keep(ptr: *mut u8, layout: Layout) -> bool {
    let Ok(mut kept) = KEPT.lock() else {
        return false;
    };
    if kept.len == SLOTS {
        return false;
    }
    let len = kept.len;
    kept.blocks[len] = Block {
        size: layout.size(),
        align: layout.align(),
        addr: ptr as usize,
    };
    kept.len += 1;
    true
}

// SAFETY: every block handed out was allocated by `System` with the same layout it is asked
// for (kept blocks are matched on exact size and alignment), and every block goes back to
// `System` with the layout it was allocated with, or is kept for a later request of exactly
// that layout. The lock only guards plain data and is never held across a call out.
unsafe impl GlobalAlloc for Recycling {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if kept_size(layout) {
            if let Some(ptr) = take(layout) {
                return ptr;
            }
        }
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if kept_size(layout) {
            if let Some(ptr) = take(layout) {
                // SAFETY: the block is `layout.size()` bytes long and ours alone.
                unsafe { ptr.write_bytes(0, layout.size()) };
                return ptr;
            }
        }
        // SAFETY: the caller's contract for `alloc_zeroed`, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if kept_size(layout) && keep(ptr, layout) {
            return;
        }
        // SAFETY: `ptr` came from `System` with `layout` (see above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !kept_size(layout) && !kept_size(new_layout) {
            // SAFETY: `ptr` came from `System` with `layout`, the caller's contract holds.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // one side is in the kept range: allocate, copy and free through this allocator
        // SAFETY: `new_layout` has a non-zero size (the caller's contract for `realloc`).
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and distinct;
            // `ptr` was allocated with `layout` and is not used again.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_large_block_is_reused_for_the_same_layout_only() {
        let a = Recycling;
        let layout = Layout::from_size_align(MIN + 4096, 8).unwrap();
        let other = Layout::from_size_align(MIN + 8192, 8).unwrap();
        unsafe {
            let p = a.alloc(layout);
            p.write_bytes(7, layout.size());
            a.dealloc(p, layout);
            let q = a.alloc_zeroed(layout);
            assert_eq!(q, p, "the kept block comes back");
            assert!(std::slice::from_raw_parts(q, layout.size())
                .iter()
                .all(|&b| b == 0));
            a.dealloc(q, layout);
            let r = a.alloc(other);
            assert_ne!(r, p, "a different size gets its own block");
            let r = a.realloc(r, other, 64);
            a.dealloc(r, Layout::from_size_align(64, 8).unwrap());
            let p = a.alloc(layout);
            a.dealloc(p, layout);
        }
    }
}
