//! Framing of the control-plane RPC: every message is one frame, a 4-byte
//! big-endian length followed by the message encoded with `postcard`.
//!
//! Connections are plain blocking TCP streams, one reader thread per
//! connection turning frames into messages of the crossbeam channels the
//! cluster components already use; writes go through a shared [`Link`].

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest frame accepted (job binaries travel in one frame).
const MAX_FRAME: usize = 512 << 20;

/// Writes one message as a frame.
pub(crate) fn write_frame<M: Serialize>(stream: &mut impl Write, msg: &M) -> Result<()> {
    let bytes = postcard::to_stdvec(msg).map_err(|e| Error::Rpc(format!("cannot encode a message: {e}")))?;
    let len = u32::try_from(bytes.len()).map_err(|_| Error::Rpc("message too large".into()))?;
    stream.write_all(&len.to_be_bytes()).map_err(|e| Error::Rpc(format!("connection broken: {e}")))?;
    stream.write_all(&bytes).map_err(|e| Error::Rpc(format!("connection broken: {e}")))?;
    stream.flush().map_err(|e| Error::Rpc(format!("connection broken: {e}")))
}

/// Reads one frame; `Ok(None)` when the peer closed the connection cleanly.
pub(crate) fn read_frame<M: DeserializeOwned>(stream: &mut impl Read) -> Result<Option<M>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(Error::Rpc(format!("connection broken: {e}"))),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(Error::Rpc(format!(
            "a frame of {len} bytes is larger than the limit ({MAX_FRAME}); not a Sluice peer?"
        )));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).map_err(|e| Error::Rpc(format!("connection broken: {e}")))?;
    postcard::from_bytes(&buf)
        .map(Some)
        .map_err(|e| Error::Rpc(format!("cannot decode a message ({e}); are both sides the same Sluice version?")))
}

/// The sending half of a connection, shareable between threads.
#[derive(Clone)]
pub(crate) struct Link {
    stream: Arc<Mutex<TcpStream>>,
    peer: String,
}

impl Link {
    /// Wraps a connected stream.
    pub(crate) fn new(stream: TcpStream) -> Result<(Link, TcpStream)> {
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        let reader = stream.try_clone().map_err(|e| Error::Rpc(format!("cannot clone a socket: {e}")))?;
        Ok((Link { stream: Arc::new(Mutex::new(stream)), peer }, reader))
    }

    /// Sends one message.
    pub(crate) fn send<M: Serialize>(&self, msg: &M) -> Result<()> {
        let mut s = self.stream.lock().map_err(|_| Error::Rpc("link lock poisoned".into()))?;
        write_frame(&mut *s, msg)
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    /// Closes both directions (the peer's reader sees the end).
    pub(crate) fn close(&self) {
        if let Ok(s) = self.stream.lock() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Connects to `addr`, retrying until `timeout`: the peer may be starting.
pub(crate) fn connect(addr: &str, what: &str, timeout: Duration) -> Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = addr
            .to_socket_addrs()
            .map_err(|e| Error::Rpc(format!("bad address '{addr}' of the {what}: {e}")))?
            .next()
            .ok_or_else(|| Error::Rpc(format!("address '{addr}' of the {what} resolves to nothing")))
            .and_then(|a| {
                TcpStream::connect_timeout(&a, Duration::from_secs(2)).map_err(|e| Error::Rpc(e.to_string()))
            });
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::Rpc(format!(
                "cannot reach the {what} at {addr} within {timeout:?}: {e}; is it running, and is the address right?"
            )))
            }
            Err(_) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_eof_is_clean() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &("hello".to_string(), 42u64)).unwrap();
        write_frame(&mut buf, &vec![1u8, 2, 3]).unwrap();
        let mut r = std::io::Cursor::new(buf);
        let a: Option<(String, u64)> = read_frame(&mut r).unwrap();
        assert_eq!(a, Some(("hello".into(), 42)));
        let b: Option<Vec<u8>> = read_frame(&mut r).unwrap();
        assert_eq!(b, Some(vec![1, 2, 3]));
        let c: Option<Vec<u8>> = read_frame(&mut r).unwrap();
        assert_eq!(c, None);
    }

    #[test]
    fn oversized_or_garbage_frames_are_errors() {
        let mut r = std::io::Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 0]);
        let e = read_frame::<String>(&mut r).unwrap_err().to_string();
        assert!(e.contains("larger than the limit"), "{e}");
        let mut r = std::io::Cursor::new(vec![0, 0, 0, 2, 0xff, 0xff]);
        assert!(read_frame::<String>(&mut r).is_err());
    }
}
