//! The node's shared-memory arena, mapped once per connection.
//!
//! Blocks are written after `CreateObject` (then sealed) and read only at
//! locations the node granted (`GetObjects{map: true}`), until the grant is
//! given back with `RefUpdate.unmap`.

use std::fs::OpenOptions;

use memmap2::MmapRaw;

use crate::{Error, Result};

pub(crate) struct Arena {
    map: MmapRaw,
}

impl Arena {
    pub fn open(path: &str) -> std::io::Result<Arena> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let map = MmapRaw::map_raw(&file)?;
        Ok(Arena { map })
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        let end = offset.checked_add(len as u64);
        match end {
            Some(end) if end <= self.map.len() as u64 => Ok(offset as usize),
            _ => Err(Error::Connection(format!(
                "shared-memory block {offset}+{len} lies outside the arena of {} bytes",
                self.map.len()
            ))),
        }
    }

    /// Copy `data` into the block at `offset` (a block this process created).
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let at = self.check(offset, data.len())?;
        // SAFETY: the range lies inside the mapping (checked), and the block
        // was allocated to this process by the node: nobody else reads or
        // writes it until it is sealed.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.map.as_mut_ptr().add(at), data.len());
        }
        Ok(())
    }

    /// The bytes of a granted block. The slice must not outlive the grant.
    pub fn read(&self, offset: u64, size: u64) -> Result<&[u8]> {
        let at = self.check(offset, size as usize)?;
        // SAFETY: inside the mapping (checked); a granted block is sealed
        // and pinned by the node, so it does not change until it is unmapped.
        Ok(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(at), size as usize) })
    }
}
