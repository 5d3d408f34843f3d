//! Framing of the local stream: a 4-byte little-endian length, then that many
//! bytes of one protobuf message. Frames larger than [`MAX_FRAME_BYTES`] are
//! refused so a corrupt length cannot make a peer allocate without bound.

/// The largest frame either side accepts (256 MiB).
pub const MAX_FRAME_BYTES: usize = 256 << 20;

/// A frame header announced more than [`MAX_FRAME_BYTES`].
#[derive(Debug, thiserror::Error)]
#[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_BYTES}")]
pub struct FrameTooLarge(pub usize);

/// Append `msg` to `out` as one frame.
pub fn encode_frame<M: prost::Message>(msg: &M, out: &mut Vec<u8>) {
    let len = msg.encoded_len();
    out.reserve(4 + len);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    msg.encode(out).expect("vec has room");
}

/// If `buf` starts with a whole frame, return its body's range and the total
/// length consumed.
pub fn next_frame(buf: &[u8]) -> Result<Option<(std::ops::Range<usize>, usize)>, FrameTooLarge> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(FrameTooLarge(len));
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    Ok(Some((4..4 + len, 4 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1;

    #[test]
    fn frames_split_and_join() {
        let msg = v1::Warning {
            message: "hi".into(),
        };
        let mut buf = Vec::new();
        encode_frame(&msg, &mut buf);
        encode_frame(&msg, &mut buf);
        let (body, used) = next_frame(&buf).unwrap().unwrap();
        let decoded: v1::Warning = prost::Message::decode(&buf[body]).unwrap();
        assert_eq!(decoded.message, "hi");
        assert!(next_frame(&buf[used..used + 3]).unwrap().is_none());
    }

    #[test]
    fn oversized_length_is_refused() {
        let buf = (u32::MAX).to_le_bytes();
        assert!(next_frame(&buf).is_err());
    }
}
