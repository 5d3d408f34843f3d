//! Typed ids. Each id is a fixed number of bytes on the wire; decoding checks
//! the length so that a malformed message is an error, never a panic.
//!
//! - `TaskId`: 16 bytes, made by the submitter (8-byte random client prefix +
//!   8-byte counter in the Python SDK).
//! - `ObjectId`: 20 bytes = `TaskId` + 4-byte little-endian index. Index 0 is
//!   an object made by `put`; index i+1 is the i-th return of the task.
//! - `NodeId`, `WorkerId`, `ActorId`: 16 random bytes. `JobId`: 4 bytes.

use std::fmt;

/// A wire id had the wrong length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: expected {expected} bytes, got {actual}")]
pub struct IdError {
    pub kind: &'static str,
    pub expected: usize,
    pub actual: usize,
}

macro_rules! define_id {
    ($name:ident, $len:expr, $label:expr) => {
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        /// Hashed as whole words, with no length: the derived hash of a byte
        /// array writes its length and then the bytes, which a fast hasher
        /// (foldhash) takes through its general byte-string path; an
        /// object id is hashed a dozen times over a task's life in the node.
        impl std::hash::Hash for $name {
            #[inline]
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                let mut words = self.0.chunks_exact(8);
                for w in &mut words {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(w);
                    state.write_u64(u64::from_le_bytes(b));
                }
                let rest = words.remainder();
                if !rest.is_empty() {
                    let mut b = [0u8; 8];
                    b[..rest.len()].copy_from_slice(rest);
                    state.write_u64(u64::from_le_bytes(b));
                }
            }
        }

        impl $name {
            pub const LEN: usize = $len;

            /// Decode from wire bytes, checking the length.
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
                let arr: [u8; $len] = bytes.try_into().map_err(|_| IdError {
                    kind: $label,
                    expected: $len,
                    actual: bytes.len(),
                })?;
                Ok(Self(arr))
            }

            pub fn random() -> Self {
                Self(rand::random())
            }

            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }

            pub fn to_vec(&self) -> Vec<u8> {
                self.0.to_vec()
            }

            pub fn hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parse the hex form (as printed by `hex()` and `Display`).
            pub fn from_hex(text: &str) -> Result<Self, IdError> {
                let bytes = hex::decode(text).map_err(|_| IdError {
                    kind: $label,
                    expected: $len,
                    actual: text.len() / 2,
                })?;
                Self::from_bytes(&bytes)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.hex())
            }
        }
    };
}

define_id!(TaskId, 16, "task id");
define_id!(ObjectId, 20, "object id");
define_id!(NodeId, 16, "node id");
define_id!(WorkerId, 16, "worker id");
define_id!(ActorId, 16, "actor id");
define_id!(JobId, 4, "job id");

impl ObjectId {
    /// The id of the `index`-th return (0-based) of `task`.
    pub fn for_return(task: TaskId, index: u32) -> Self {
        let mut bytes = [0u8; 20];
        bytes[..16].copy_from_slice(&task.0);
        bytes[16..].copy_from_slice(&(index + 1).to_le_bytes());
        Self(bytes)
    }

    /// The task whose return (or put) this is.
    pub fn task_id(&self) -> TaskId {
        let mut t = [0u8; 16];
        t.copy_from_slice(&self.0[..16]);
        TaskId(t)
    }

    /// 0 for a put, i+1 for the i-th return.
    pub fn index(&self) -> u32 {
        u32::from_le_bytes([self.0[16], self.0[17], self.0[18], self.0[19]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_id_layout_round_trips() {
        let task = TaskId::random();
        let id = ObjectId::for_return(task, 2);
        assert_eq!(id.task_id(), task);
        assert_eq!(id.index(), 3);
        assert_eq!(ObjectId::from_hex(&id.hex()).unwrap(), id);
    }

    #[test]
    fn wrong_length_is_an_error() {
        let err = ObjectId::from_bytes(&[1, 2, 3]).unwrap_err();
        assert_eq!(err.expected, 20);
        assert_eq!(err.actual, 3);
        assert!(err.to_string().contains("object id"));
    }
}
