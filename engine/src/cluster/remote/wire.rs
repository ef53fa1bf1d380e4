//! Framing of the control-plane RPC: every message is one frame, a 4-byte
//! big-endian length followed by the message encoded with `postcard`.
//!
//! Connections are blocking [`SecureStream`]s (plain TCP or mutual TLS, as
//! the process's [`Security`] says), one reader thread per connection
//! turning frames into messages of the crossbeam channels the cluster
//! components already use; writes go through a shared [`Link`], or through
//! a [`LinkTransport`] that makes a link a
//! [`Gateway`](crate::cluster::gateway::Gateway).

use crate::cluster::gateway::{GatewayClosed, Transport};
use crate::error::{Error, Result, RpcError};
use crate::transport::{SecureStream, Security};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest frame accepted: control messages are small, and job
/// binaries move in chunks of 1 MiB (see `messages::ArtifactFrame`).
const MAX_FRAME: usize = 16 << 20;

fn broken(e: std::io::Error) -> Error {
    Error::Rpc(RpcError::ConnectionBroken(e))
}

/// Writes one message as a frame.
pub fn write_frame<M: Serialize>(stream: &mut impl Write, msg: &M) -> Result<()> {
    let bytes = postcard::to_stdvec(msg).map_err(|e| RpcError::Encode(e.to_string()))?;
    let len = u32::try_from(bytes.len()).map_err(|_| RpcError::FrameTooLarge { len: bytes.len(), limit: MAX_FRAME })?;
    stream.write_all(&len.to_be_bytes()).map_err(broken)?;
    stream.write_all(&bytes).map_err(broken)?;
    stream.flush().map_err(broken)
}

/// Reads one frame; `Ok(None)` when the peer closed the connection cleanly.
pub fn read_frame<M: DeserializeOwned>(stream: &mut impl Read) -> Result<Option<M>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(broken(e)),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(RpcError::FrameTooLarge { len, limit: MAX_FRAME }.into());
    }
    // Grows with the bytes that arrive: a lying length prefix allocates nothing up front.
    let mut buf = Vec::new();
    stream.take(len as u64).read_to_end(&mut buf).map_err(broken)?;
    if buf.len() < len {
        return Err(broken(std::io::ErrorKind::UnexpectedEof.into()));
    }
    postcard::from_bytes(&buf).map(Some).map_err(|e| RpcError::Decode(e.to_string()).into())
}

/// The sending half of a connection, shareable between threads.
#[derive(Clone)]
pub struct Link {
    stream: Arc<Mutex<SecureStream>>,
    peer: String,
}

impl Link {
    /// Wraps a connected stream; returns the link and the reading half.
    pub fn new(stream: SecureStream) -> Result<(Link, SecureStream)> {
        let _ = stream.set_nodelay(true);
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
        let reader = stream.try_clone().map_err(|e| Error::io("cannot clone a socket", e))?;
        Ok((Link { stream: Arc::new(Mutex::new(stream)), peer }, reader))
    }

    /// Sends one message.
    pub fn send<M: Serialize>(&self, msg: &M) -> Result<()> {
        // A writer that panicked mid-frame leaves a stream we cannot trust:
        // treat it as broken.
        let mut s = self
            .stream
            .lock()
            .map_err(|_| broken(std::io::Error::other("a writer panicked while sending on this link")))?;
        write_frame(&mut *s, msg)
    }

    /// The peer's address.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// Closes both directions (the peer's reader sees the end).
    pub fn close(&self) {
        if let Ok(s) = self.stream.lock() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A [`Transport`] over a [`Link`]: messages queue to a writer thread that
/// frames them onto the connection, so a sender never blocks on the peer.
/// Once a write fails the link is closed (the reader on either side sees
/// the end) and every later send fails with [`GatewayClosed`].
pub struct LinkTransport<M> {
    queue: crossbeam_channel::Sender<M>,
    link: Link,
}

impl<M: Serialize + Send + 'static> LinkTransport<M> {
    /// Starts the writer thread of `link`.
    pub fn start(link: Link, thread_name: &str) -> Result<Self> {
        let (queue, inbox) = crossbeam_channel::unbounded::<M>();
        let writer = link.clone();
        std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                while let Ok(msg) = inbox.recv() {
                    if let Err(e) = writer.send(&msg) {
                        tracing::warn!("cannot write to {}: {e}", writer.peer());
                        writer.close();
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("cannot start a thread", e))?;
        Ok(LinkTransport { queue, link })
    }
}

impl<M: Send> Transport<M> for LinkTransport<M> {
    fn send(&self, msg: M) -> std::result::Result<(), GatewayClosed> {
        self.queue.send(msg).map_err(|_| GatewayClosed)
    }

    fn close(&self) {
        self.link.close()
    }

    fn peer(&self) -> String {
        self.link.peer().to_string()
    }
}

/// Connects to `addr`, retrying until `timeout` (the peer may be starting),
/// and secures the connection as `security` says.
pub fn connect(addr: &str, what: &str, timeout: Duration, security: &Security) -> Result<SecureStream> {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(50);
    loop {
        let resolved = addr
            .to_socket_addrs()
            .map_err(|e| e.to_string())
            .and_then(|mut a| a.next().ok_or_else(|| "it resolves to nothing".to_string()))
            .map_err(|reason| RpcError::BadAddress { addr: addr.into(), what: what.into(), reason })?;
        match TcpStream::connect_timeout(&resolved, Duration::from_secs(2)) {
            Ok(s) => {
                return security.connect(s).map_err(|e| {
                    RpcError::Refused {
                        peer: format!("{what} at {addr}"),
                        reason: format!(
                            "the secure handshake failed ({e}); do both sides use TLS with certificates of the \
                             same cluster CA (security.ssl.internal.*)?"
                        ),
                    }
                    .into()
                })
            }
            Err(e) if Instant::now() >= deadline => {
                return Err(RpcError::Unreachable {
                    what: what.into(),
                    addr: addr.into(),
                    timeout,
                    reason: e.to_string(),
                }
                .into())
            }
            Err(_) => {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
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
        let e = read_frame::<String>(&mut r).unwrap_err();
        assert!(matches!(e, Error::Rpc(RpcError::FrameTooLarge { len: 0xffff_ffff, .. })), "{e}");
        let mut r = std::io::Cursor::new(vec![0, 0, 0, 2, 0xff, 0xff]);
        assert!(matches!(read_frame::<String>(&mut r), Err(Error::Rpc(RpcError::Decode(_)))));
    }

    /// Hostile input: random bytes and mutated valid frames, decoded as each
    /// message a peer may send first or later. Nothing panics, and a length
    /// prefix larger than the input allocates nothing (the loop stays fast).
    #[test]
    fn random_and_mutated_frames_never_panic() {
        use crate::cluster::protocol::{FromTaskManager, TaskManagerRegistration, ToTaskManager};
        use crate::cluster::remote::messages::{
            FromDriver, FromTaskManagerProcess, Hello, TaskManagerHello, TaskProcessHello, ToDriver,
            ToTaskManagerProcess,
        };
        use crate::ids::TaskManagerId;
        let mut seed = 0x5eed_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut valid = Vec::new();
        let hello = Hello::TaskManager(TaskManagerHello {
            id: TaskManagerId("tm".into()),
            slots: 2,
            metrics_address: Some("127.0.0.1:9".into()),
        });
        write_frame(&mut valid, &hello).unwrap();
        let registration = TaskManagerRegistration { id: TaskManagerId("t".into()), slots: 1, data_address: None };
        write_frame(
            &mut valid,
            &TaskProcessHello { secret: crate::transport::JobSecret::generate().unwrap(), registration },
        )
        .unwrap();
        fn decode_all(bytes: &[u8]) {
            let _ = read_frame::<Hello>(&mut &bytes[..]);
            let _ = read_frame::<TaskProcessHello>(&mut &bytes[..]);
            let _ = read_frame::<FromDriver>(&mut &bytes[..]);
            let _ = read_frame::<ToDriver>(&mut &bytes[..]);
            let _ = read_frame::<FromTaskManagerProcess>(&mut &bytes[..]);
            let _ = read_frame::<ToTaskManagerProcess>(&mut &bytes[..]);
            let _ = read_frame::<FromTaskManager>(&mut &bytes[..]);
            let _ = read_frame::<ToTaskManager>(&mut &bytes[..]);
        }
        for round in 0..20_000u32 {
            let mut bytes = if round % 2 == 0 {
                let n = (next() % 64) as usize;
                (0..n).map(|_| next() as u8).collect::<Vec<u8>>()
            } else {
                let mut m = valid.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % m.len();
                    m[i] = next() as u8;
                }
                m
            };
            if round % 7 == 0 && bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&0x1FFF_FFFFu32.to_be_bytes());
            }
            decode_all(&bytes);
        }
    }

    #[test]
    fn a_link_gateway_carries_protocol_messages_and_closes() {
        use crate::cluster::gateway::Gateway;
        use crate::cluster::protocol::ToTaskManager;
        use crate::ids::JobId;
        use sluice_checkpoint::CheckpointId;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let client = connect(&addr, "test peer", Duration::from_secs(5), &Security::plaintext()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let (link, _reader) = Link::new(client).unwrap();
        let gateway: Gateway<ToTaskManager> = Gateway::new(LinkTransport::start(link, "test-writer").unwrap());
        let job_id = JobId::from_u128(7);
        gateway.send(ToTaskManager::NotifyCheckpointComplete { job_id, checkpoint: CheckpointId(3) }).unwrap();
        gateway.send(ToTaskManager::Shutdown).unwrap();
        match read_frame::<ToTaskManager>(&mut server).unwrap() {
            Some(ToTaskManager::NotifyCheckpointComplete { job_id: j, checkpoint }) => {
                assert_eq!((j, checkpoint), (job_id, CheckpointId(3)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(read_frame::<ToTaskManager>(&mut server).unwrap(), Some(ToTaskManager::Shutdown)));
        gateway.close();
        assert!(read_frame::<ToTaskManager>(&mut server).unwrap().is_none(), "the peer sees the end");
    }
}
