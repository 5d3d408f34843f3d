//! A pure block allocator over the byte range `[0, capacity)`.
//!
//! Blocks are multiples of [`BLOCK_ALIGN`] (4096) bytes and start on a
//! 4096-byte boundary. Free space is a coalescing free list indexed both by
//! offset (to merge neighbours on free) and by size (to find a fit in
//! O(log n)).
//!
//! Placement policy — *warm best fit*: the arena is a sparse shared-memory
//! file, so a page costs a page fault (and zeroing) the first time it is
//! touched and is cheap afterwards. The allocator therefore remembers the
//! highest offset it ever handed out (`touched_end`) and:
//!
//! 1. prefers the smallest free block whose first `size` bytes lie entirely
//!    below `touched_end` (already faulted); among blocks of the same size,
//!    the most recently freed one (LIFO);
//! 2. only otherwise takes the block that reaches into untouched space.
//!
//! Blocks are carved from the low end of a free block, so a loop of
//! `allocate(100 MB)`/`free` reuses the same warm pages every time.
//!
//! Because everything at or above `touched_end` is free and contiguous, at
//! most one free block can be "cold" for a given request, so the search skips
//! at most one candidate.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Alignment and granularity of every block.
pub const BLOCK_ALIGN: u64 = 4096;

/// Round `size` up to a multiple of [`BLOCK_ALIGN`]; `None` on overflow.
pub fn round_up(size: u64) -> Option<u64> {
    size.checked_add(BLOCK_ALIGN - 1)
        .map(|s| s & !(BLOCK_ALIGN - 1))
}

/// A block handed out by [`Allocator::allocate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    pub offset: u64,
    /// The rounded size actually reserved (a multiple of [`BLOCK_ALIGN`]).
    pub size: u64,
}

/// Why an allocation failed. Sizes are the caller's requested size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    ZeroSize,
    /// Larger than the whole arena: it can never fit.
    TooLarge {
        requested: u64,
        capacity: u64,
    },
    /// No free block is large enough right now (full or fragmented).
    Full {
        requested: u64,
        capacity: u64,
        used: u64,
    },
}

/// A free block's bookkeeping, keyed by offset in `free_by_offset`.
#[derive(Clone, Copy, Debug)]
struct FreeBlock {
    size: u64,
    /// When it was (last) freed: higher is more recent; 0 = never allocated.
    freed_seq: u64,
}

/// The allocator state. Not thread-safe by itself: the store wraps it in its
/// mutex.
#[derive(Debug)]
pub struct Allocator {
    /// Usable bytes, rounded down to a multiple of [`BLOCK_ALIGN`].
    capacity: u64,
    /// Free blocks by offset; adjacent free blocks are always merged.
    free_by_offset: BTreeMap<u64, FreeBlock>,
    /// The same blocks as `(size, most recent first, offset)` for fit search.
    free_by_size: BTreeSet<(u64, Reverse<u64>, u64)>,
    /// Allocated blocks: offset → rounded size. Lets `free` reject unknown
    /// offsets instead of corrupting the free list.
    allocated: HashMap<u64, u64>,
    /// Sum of allocated (rounded) sizes.
    used: u64,
    /// One past the highest byte ever allocated: pages below it are warm.
    touched_end: u64,
    /// Source of `FreeBlock::freed_seq`.
    next_free_seq: u64,
}

impl Allocator {
    pub fn new(capacity: u64) -> Self {
        let capacity = capacity & !(BLOCK_ALIGN - 1);
        let mut allocator = Allocator {
            capacity,
            free_by_offset: BTreeMap::new(),
            free_by_size: BTreeSet::new(),
            allocated: HashMap::new(),
            used: 0,
            touched_end: 0,
            next_free_seq: 1,
        };
        if capacity > 0 {
            allocator.insert_free(
                0,
                FreeBlock {
                    size: capacity,
                    freed_seq: 0,
                },
            );
        }
        allocator
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes currently allocated (rounded sizes).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Bytes currently free (`capacity - used`).
    pub fn free_bytes(&self) -> u64 {
        self.capacity - self.used
    }

    /// The size of the largest free block: the largest allocation that
    /// would succeed now.
    pub fn largest_free(&self) -> u64 {
        self.free_by_size.last().map_or(0, |&(size, _, _)| size)
    }

    /// Number of free blocks (a fragmentation measure).
    pub fn free_block_count(&self) -> usize {
        self.free_by_offset.len()
    }

    /// The rounded size of the allocated block at `offset`, if any.
    pub fn allocated_size(&self, offset: u64) -> Option<u64> {
        self.allocated.get(&offset).copied()
    }

    /// Reserve a block of at least `size` bytes (see the module docs for the
    /// placement policy).
    pub fn allocate(&mut self, size: u64) -> Result<Block, AllocError> {
        if size == 0 {
            return Err(AllocError::ZeroSize);
        }
        let rounded = match round_up(size) {
            Some(rounded) if rounded <= self.capacity => rounded,
            _ => {
                return Err(AllocError::TooLarge {
                    requested: size,
                    capacity: self.capacity,
                })
            }
        };
        let Some(offset) = self.find_fit(rounded) else {
            return Err(AllocError::Full {
                requested: size,
                capacity: self.capacity,
                used: self.used,
            });
        };
        let free = self.remove_free(offset);
        if free.size > rounded {
            self.insert_free(
                offset + rounded,
                FreeBlock {
                    size: free.size - rounded,
                    freed_seq: free.freed_seq,
                },
            );
        }
        self.allocated.insert(offset, rounded);
        self.used += rounded;
        self.touched_end = self.touched_end.max(offset + rounded);
        Ok(Block {
            offset,
            size: rounded,
        })
    }

    /// Return the block at `offset` to the free list, merging it with free
    /// neighbours. Returns the freed (rounded) size, or `None` if no block is
    /// allocated at `offset` (nothing changes).
    pub fn free(&mut self, offset: u64) -> Option<u64> {
        let size = self.allocated.remove(&offset)?;
        self.used -= size;
        let freed_seq = self.next_free_seq;
        self.next_free_seq += 1;

        let mut start = offset;
        let mut end = offset + size;
        let previous = self
            .free_by_offset
            .range(..offset)
            .next_back()
            .map(|(&o, b)| (o, *b));
        if let Some((prev_offset, prev)) = previous {
            if prev_offset + prev.size == offset {
                self.remove_free(prev_offset);
                start = prev_offset;
            }
        }
        if let Some(next) = self.free_by_offset.get(&end).copied() {
            self.remove_free(end);
            end += next.size;
        }
        self.insert_free(
            start,
            FreeBlock {
                size: end - start,
                freed_seq,
            },
        );
        Some(size)
    }

    /// The offset of the block to carve `rounded` bytes from.
    fn find_fit(&self, rounded: u64) -> Option<u64> {
        let mut cold = None;
        for &(_, _, offset) in self.free_by_size.range((rounded, Reverse(u64::MAX), 0)..) {
            if offset + rounded <= self.touched_end {
                return Some(offset);
            }
            // Only the block reaching past `touched_end` can be cold (see the
            // module docs); remember it and keep looking for a warm one.
            cold.get_or_insert(offset);
        }
        cold
    }

    fn insert_free(&mut self, offset: u64, block: FreeBlock) {
        self.free_by_size
            .insert((block.size, Reverse(block.freed_seq), offset));
        self.free_by_offset.insert(offset, block);
    }

    fn remove_free(&mut self, offset: u64) -> FreeBlock {
        let block = self.free_by_offset.remove(&offset);
        debug_assert!(block.is_some(), "free block at {offset} missing");
        let block = block.unwrap_or(FreeBlock {
            size: 0,
            freed_seq: 0,
        });
        self.free_by_size
            .remove(&(block.size, Reverse(block.freed_seq), offset));
        block
    }

    /// Check every structural invariant; panics with a description if one
    /// is broken. Used by tests (and cheap enough for debug assertions).
    pub fn check_invariants(&self) {
        let mut spans: Vec<(u64, u64, bool)> = self
            .free_by_offset
            .iter()
            .map(|(&o, b)| (o, b.size, true))
            .chain(self.allocated.iter().map(|(&o, &s)| (o, s, false)))
            .collect();
        spans.sort_unstable();
        let mut cursor = 0;
        let mut previous_free = false;
        for &(offset, size, is_free) in &spans {
            assert_eq!(offset, cursor, "gap or overlap at offset {offset}");
            assert!(size > 0 && size % BLOCK_ALIGN == 0, "bad block size {size}");
            assert_eq!(offset % BLOCK_ALIGN, 0, "misaligned block at {offset}");
            assert!(
                !(is_free && previous_free),
                "uncoalesced free block at {offset}"
            );
            previous_free = is_free;
            cursor = offset + size;
        }
        assert_eq!(cursor, self.capacity, "blocks do not cover the capacity");
        let free: u64 = self.free_by_offset.values().map(|b| b.size).sum();
        let allocated: u64 = self.allocated.values().sum();
        assert_eq!(allocated, self.used, "used out of sync");
        assert_eq!(free + self.used, self.capacity, "used + free != capacity");
        assert_eq!(self.free_by_size.len(), self.free_by_offset.len());
        for &(size, Reverse(seq), offset) in &self.free_by_size {
            let block = self.free_by_offset.get(&offset);
            assert!(
                matches!(block, Some(b) if b.size == size && b.freed_seq == seq),
                "size index out of sync at {offset}"
            );
        }
        assert!(self.touched_end <= self.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn sizes_round_up_and_offsets_align() {
        let mut a = Allocator::new(64 * BLOCK_ALIGN);
        let b1 = a.allocate(1).unwrap();
        let b2 = a.allocate(4097).unwrap();
        let b3 = a.allocate(4096).unwrap();
        assert_eq!(
            b1,
            Block {
                offset: 0,
                size: 4096
            }
        );
        assert_eq!(
            b2,
            Block {
                offset: 4096,
                size: 8192
            }
        );
        assert_eq!(b3.offset, 3 * 4096);
        assert_eq!(a.used(), 4 * 4096);
        a.check_invariants();
        assert_eq!(round_up(u64::MAX), None);
    }

    #[test]
    fn capacity_rounds_down_and_zero_capacity_rejects_everything() {
        let a = Allocator::new(3 * BLOCK_ALIGN + 100);
        assert_eq!(a.capacity(), 3 * BLOCK_ALIGN);
        a.check_invariants();
        let mut empty = Allocator::new(0);
        empty.check_invariants();
        assert_eq!(
            empty.allocate(1),
            Err(AllocError::TooLarge {
                requested: 1,
                capacity: 0
            })
        );
    }

    #[test]
    fn zero_full_and_too_large() {
        let mut a = Allocator::new(4 * BLOCK_ALIGN);
        assert_eq!(a.allocate(0), Err(AllocError::ZeroSize));
        assert_eq!(
            a.allocate(4 * BLOCK_ALIGN + 1),
            Err(AllocError::TooLarge {
                requested: 4 * BLOCK_ALIGN + 1,
                capacity: 4 * BLOCK_ALIGN
            })
        );
        assert_eq!(
            a.allocate(u64::MAX),
            Err(AllocError::TooLarge {
                requested: u64::MAX,
                capacity: 4 * BLOCK_ALIGN
            })
        );
        a.allocate(3 * BLOCK_ALIGN).unwrap();
        assert_eq!(
            a.allocate(2 * BLOCK_ALIGN),
            Err(AllocError::Full {
                requested: 2 * BLOCK_ALIGN,
                capacity: 4 * BLOCK_ALIGN,
                used: 3 * BLOCK_ALIGN
            })
        );
        a.allocate(BLOCK_ALIGN).unwrap();
        assert_eq!(a.free_bytes(), 0);
        a.check_invariants();
    }

    #[test]
    fn fragmentation_reports_full_even_with_enough_free_bytes() {
        let mut a = Allocator::new(4 * BLOCK_ALIGN);
        let blocks: Vec<_> = (0..4).map(|_| a.allocate(1).unwrap()).collect();
        a.free(blocks[0].offset);
        a.free(blocks[2].offset);
        assert_eq!(a.free_bytes(), 2 * BLOCK_ALIGN);
        assert!(matches!(
            a.allocate(2 * BLOCK_ALIGN),
            Err(AllocError::Full { .. })
        ));
        a.check_invariants();
    }

    #[test]
    fn free_coalesces_with_both_neighbours() {
        let mut a = Allocator::new(16 * BLOCK_ALIGN);
        let blocks: Vec<_> = (0..4).map(|_| a.allocate(BLOCK_ALIGN).unwrap()).collect();
        // [b0 b1 b2 b3 | tail]
        a.free(blocks[0].offset);
        a.free(blocks[2].offset);
        assert_eq!(a.free_block_count(), 3);
        a.free(blocks[1].offset); // merges b0..b2
        assert_eq!(a.free_block_count(), 2);
        a.free(blocks[3].offset); // merges everything
        assert_eq!(a.free_block_count(), 1);
        assert_eq!(a.used(), 0);
        a.check_invariants();
        // The whole range is one block again.
        assert_eq!(a.allocate(16 * BLOCK_ALIGN).unwrap().offset, 0);
    }

    #[test]
    fn unknown_or_double_free_is_rejected() {
        let mut a = Allocator::new(8 * BLOCK_ALIGN);
        let b = a.allocate(10).unwrap();
        assert_eq!(a.free(b.offset + 4096), None);
        assert_eq!(a.free(b.offset), Some(4096));
        assert_eq!(a.free(b.offset), None);
        a.check_invariants();
    }

    #[test]
    fn repeated_put_free_cycles_reuse_the_same_warm_block() {
        let mut a = Allocator::new(1024 * MB);
        let keep = a.allocate(MB).unwrap();
        for _ in 0..10 {
            let b = a.allocate(100 * MB).unwrap();
            assert_eq!(b.offset, keep.offset + keep.size);
            a.free(b.offset);
        }
        a.check_invariants();
    }

    #[test]
    fn prefers_warm_block_over_smaller_untouched_space() {
        // Warm hole of 300 MB at the start, then a live block, then only
        // 150 MB of never-touched tail: a 100 MB request goes to the hole.
        let mut a = Allocator::new(550 * MB);
        let hole = a.allocate(300 * MB).unwrap();
        let live = a.allocate(100 * MB).unwrap();
        a.free(hole.offset);
        let b = a.allocate(100 * MB).unwrap();
        assert_eq!(b.offset, hole.offset);
        assert_eq!(live.offset, 300 * MB);
        a.check_invariants();
    }

    #[test]
    fn prefers_best_fit_then_most_recently_freed() {
        let mut a = Allocator::new(64 * BLOCK_ALIGN);
        // Layout: [big(4) sep small1(1) sep small2(1) sep] + tail
        let big = a.allocate(4 * BLOCK_ALIGN).unwrap();
        let _sep1 = a.allocate(1).unwrap();
        let small1 = a.allocate(1).unwrap();
        let _sep2 = a.allocate(1).unwrap();
        let small2 = a.allocate(1).unwrap();
        let _sep3 = a.allocate(1).unwrap();
        a.free(big.offset);
        a.free(small2.offset);
        a.free(small1.offset); // most recently freed small block
        assert_eq!(a.allocate(1).unwrap().offset, small1.offset);
        assert_eq!(a.allocate(1).unwrap().offset, small2.offset);
        assert_eq!(a.allocate(1).unwrap().offset, big.offset);
        a.check_invariants();
    }

    #[test]
    fn random_alloc_free_sequences_keep_invariants() {
        // A small xorshift generator keeps the test deterministic and free of
        // extra dependencies.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..20 {
            let capacity = (64 + round * 16) * BLOCK_ALIGN;
            let mut a = Allocator::new(capacity);
            let mut live: Vec<Block> = Vec::new();
            for _ in 0..2_000 {
                if live.is_empty() || next() % 3 != 0 {
                    let size = 1 + next() % (12 * BLOCK_ALIGN);
                    match a.allocate(size) {
                        Ok(block) => {
                            assert!(block.size >= size && block.size < size + BLOCK_ALIGN);
                            assert!(block.offset + block.size <= capacity);
                            for other in &live {
                                let disjoint = block.offset + block.size <= other.offset
                                    || other.offset + other.size <= block.offset;
                                assert!(disjoint, "{block:?} overlaps {other:?}");
                            }
                            live.push(block);
                        }
                        Err(AllocError::Full { used, .. }) => assert_eq!(used, a.used()),
                        Err(other) => panic!("unexpected {other:?}"),
                    }
                } else {
                    let index = (next() % live.len() as u64) as usize;
                    let block = live.swap_remove(index);
                    assert_eq!(a.free(block.offset), Some(block.size));
                }
                a.check_invariants();
            }
            for block in live.drain(..) {
                a.free(block.offset);
            }
            a.check_invariants();
            assert_eq!(a.used(), 0);
            assert_eq!(a.free_block_count(), 1);
        }
    }
}
