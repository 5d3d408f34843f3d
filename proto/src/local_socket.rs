//! The local transport's socket: a connected Unix stream registered with
//! tokio's reactor for reading only.
//!
//! tokio's own `UnixStream` registers for writability too, and a Unix
//! socket signals writability each time its peer reads a message this end
//! sent, so every message sent costs the sender's reactor a wake-up for
//! nothing (and on a VM a wake-up of another CPU is the dearest step of a
//! local round trip). Here writes go straight to the non-blocking socket;
//! only when it is full does a writer register a duplicate of it for
//! writability, for as long as that write waits.
//!
//! Both ends use it: the node (`ember-server`'s local listener) and the
//! Rust SDK's local connections.

use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use bytes::{BufMut, BytesMut};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// A connected, non-blocking Unix stream, readable through the reactor.
/// Reads and writes take `&self`: one task may read while another writes.
#[derive(Debug)]
pub struct LocalSocket {
    fd: AsyncFd<UnixStream>,
}

impl LocalSocket {
    /// Take over a tokio stream (it must be used inside a tokio runtime).
    pub fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<Self> {
        // `into_std` leaves the socket non-blocking.
        Ok(Self {
            fd: register(stream.into_std()?, Interest::READABLE)?,
        })
    }

    /// Connect to the socket at `path`.
    pub async fn connect(path: impl AsRef<std::path::Path>) -> io::Result<Self> {
        Self::from_tokio(tokio::net::UnixStream::connect(path).await?)
    }

    /// Read what the socket holds into `buf`'s spare capacity (reserving
    /// some when it has none), waiting until something is there; `Ok(0)` at
    /// the end of the stream.
    pub async fn read_some(&self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            buf.reserve(64 * 1024);
        }
        loop {
            let mut guard = self.fd.readable().await?;
            let spare = buf.chunk_mut();
            let (ptr, len) = (spare.as_mut_ptr(), spare.len());
            let read = guard.try_io(|s| {
                // SAFETY: `read(2)` writes at most `len` bytes at `ptr`, the
                // buffer's spare capacity, which no reference covers.
                let n = unsafe { libc::read(s.as_raw_fd(), ptr.cast(), len) };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match read {
                Ok(Ok(n)) => {
                    if n > 0 && n < len {
                        // A short read drained the socket: wait for the
                        // next event rather than find it empty with one
                        // more read (as tokio's own streams do). Data that
                        // arrives meanwhile brings a new edge, which the
                        // guard's clear leaves standing.
                        guard.clear_ready();
                    }
                    // SAFETY: `read(2)` initialized the first `n` bytes.
                    unsafe { buf.advance_mut(n) };
                    return Ok(n);
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Err(e),
                // Not readable after all: the guard cleared the readiness.
                Err(_would_block) => {}
            }
        }
    }

    /// Write all of `data`: straight to the socket while it takes it, and
    /// waiting for room when it is full.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        let mut room: Option<AsyncFd<UnixStream>> = None;
        let mut socket = self.fd.get_ref();
        while !data.is_empty() {
            match socket.write(data) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if room.is_none() {
                        let dup = socket.try_clone()?;
                        room = Some(register(dup, Interest::WRITABLE)?);
                    }
                    let fd = room.as_ref().expect("registered above");
                    // Registration reports the current state, so room made
                    // between the failed write and here is not missed.
                    fd.writable().await?.clear_ready();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Shut down the writing half: the peer reads the end of the stream.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.fd.get_ref().shutdown(std::net::Shutdown::Write)
    }
}

/// Register `socket` with the current reactor for `interest` alone.
fn register(socket: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    // SAFETY: a `UnixStream` owns its descriptor: it stays open, and
    // `as_raw_fd` returns it, until the stream (inside the `AsyncFd`) drops.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A round trip both ways, and a write larger than the socket buffer
    /// (it waits for room while the peer reads) arriving whole and in order.
    #[tokio::test]
    async fn writes_wait_for_room_and_arrive_whole() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (a, b) = (
            std::sync::Arc::new(LocalSocket::from_tokio(a).unwrap()),
            LocalSocket::from_tokio(b).unwrap(),
        );
        a.write_all(b"ping").await.unwrap();
        let mut buf = BytesMut::new();
        while buf.len() < 4 {
            b.read_some(&mut buf).await.unwrap();
        }
        assert_eq!(&buf[..], b"ping");

        let big: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
        let writer = {
            let (a, big) = (a.clone(), big.clone());
            tokio::spawn(async move {
                a.write_all(&big).await.unwrap();
                a.shutdown_write().unwrap();
            })
        };
        let mut got = BytesMut::new();
        while b.read_some(&mut got).await.unwrap() > 0 {}
        writer.await.unwrap();
        assert_eq!(got.len(), big.len());
        assert!(got[..] == big[..], "the bytes arrive in order");
    }
}
