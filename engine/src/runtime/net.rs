//! The cross-process data plane: one data channel bridged over TCP.
//!
//! In cluster mode the producer and the consumer of a channel may live in
//! different processes. Task code does not change: the producer still holds a
//! bounded `Sender<StreamElement<T>>` and the consumer a `Receiver`; a bridge
//! thread on each side moves the elements over one TCP connection per channel.
//! The consumer's process runs a [`DataServer`], whose
//! [`receiver`](DataServer::receiver) hands out the consumer's end (the
//! producer may connect before or after); the producer's process calls
//! [`remote_sender`], whose bridge connects (retrying while the consumer's
//! process starts), sends a hello naming the channel and forwards elements.
//!
//! # Wire format
//!
//! Connections are [`SecureStream`]s: mutual TLS when the process's
//! [`Security`] says so. The hello is `MAGIC` (8 bytes), the protocol
//! version (u16 LE), a length-prefixed (u32 LE) postcard-encoded
//! [`ChannelKey`] and the job's [`JobSecret`] (32 bytes), which proves that
//! the producer belongs to the job; a connection whose hello does not match
//! is closed with a log line. A server serves at most [`MAX_CONNECTIONS`]
//! connections at once, and a producer's connection waiting for its
//! receiver is dropped after [`PENDING_TTL`]. Then the producer
//! sends frames, each a u32 LE length and a postcard-encoded
//! `StreamElement<T>` (a batch as its `Vec<T>`; watermarks, barriers,
//! idleness and end of stream in-band, in order), and the consumer sends
//! credits back: u32 LE counts of elements it can take.
//!
//! # Flow control
//!
//! The consumer first grants `capacity` credits and returns one each time its
//! bounded channel accepts an element; the producer's bridge sends only while
//! it holds a credit, else leaves elements in the producer's bounded channel.
//! With capacities `c_out` (producer side) and `c_in` (consumer side) at most
//! `c_out + 2 * c_in` elements are under way before the producer's `send`
//! blocks: backpressure reaches the producer task as it does in-process.
//!
//! # Failures
//!
//! Nothing here panics. A broken connection, an undecodable frame or a peer
//! that goes away ends the bridge: on the consumer side the channel's sender
//! is dropped before end of stream, so the input task sees `Disconnected` and
//! fails (`Error::ChannelClosed`); on the producer side the receiver is
//! dropped, so the producer's next `send` fails. After end of stream both
//! bridges close the connection cleanly.

use crate::error::{Error, Result};
use crate::ids::JobId;
use crate::record::Data;
use crate::runtime::element::StreamElement;
use crate::runtime::erased::{AnyBox, StreamType};
use crate::runtime::shuffle::ChannelKey;
use crate::transport::{Admission, Admitted, JobSecret, SecureStream, Security, MAX_CONNECTIONS};
use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first bytes of every data connection.
const MAGIC: [u8; 8] = *b"SLUICEDP";
/// The version of the wire format; both sides must speak the same.
const VERSION: u16 = 2;
/// The largest frame accepted (a garbled length must not allocate gigabytes).
const MAX_FRAME: usize = 1 << 30;
/// The largest encoded channel key in a hello.
const MAX_HELLO: usize = 1024;
/// How long an accepted connection may take to send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a producer's connection may wait for its receiver to be claimed.
const PENDING_TTL: Duration = Duration::from_secs(300);
/// How long a producer's bridge waits, after end of stream, for the consumer to close.
const LINGER: Duration = Duration::from_secs(30);

/// Runs the consumer's bridge of one channel on its accepted connection,
/// until end of stream or a failure (built by [`StreamType::inbound_bridge`]).
pub(crate) type InboundBridge = Box<dyn FnOnce(&SecureStream, &ChannelKey) -> Result<()> + Send>;

/// How a process's data connections prove themselves: its security (plain
/// or mutual TLS) and the job's secret.
#[derive(Debug, Clone)]
pub(crate) struct DataAuth {
    pub(crate) security: Security,
    pub(crate) secret: JobSecret,
}

/// Where the producer's bridge of a channel connects to.
#[derive(Debug, Clone)]
pub(crate) struct OutboundLink {
    /// The channel.
    pub(crate) key: ChannelKey,
    /// The consumer's [`DataServer`].
    pub(crate) addr: SocketAddr,
    /// How long to keep retrying the connect.
    pub(crate) connect_timeout: Duration,
    /// How the connection proves itself.
    pub(crate) auth: Arc<DataAuth>,
}

/// The producer's end of channel `key` whose consumer lives behind `addr`: an
/// [`AnyBox`] holding a `Sender<StreamElement<T>>` of capacity `capacity`. A
/// bridge thread connects (retrying with a short backoff for up to
/// `connect_timeout`, since the consumer's process may start later), sends a
/// hello naming `key`, then forwards every element. If it fails, it logs why
/// and drops the channel's receiver, so the producer's sends fail.
pub(crate) fn remote_sender(
    key: ChannelKey,
    addr: SocketAddr,
    ty: &dyn StreamType,
    capacity: usize,
    connect_timeout: Duration,
    auth: Arc<DataAuth>,
) -> Result<AnyBox> {
    let (sender, _bridge) = ty.outbound_bridge(capacity, OutboundLink { key, addr, connect_timeout, auth })?;
    Ok(sender)
}

/// Accepts data connections of remote producers for this process.
pub(crate) struct DataServer {
    shared: Arc<Shared>,
    address: SocketAddr,
}

/// The state shared by the server handle, its acceptor and its bridges.
struct Shared {
    state: Mutex<State>,
    closed: AtomicBool,
    next_connection: AtomicU64,
    auth: Arc<DataAuth>,
    admission: Admission,
}

/// Channels waiting for their other half, live connections, released attempts.
#[derive(Default)]
struct State {
    pending: HashMap<ChannelKey, Pending>,
    /// Running bridges: connection id and a handle to shut the socket down.
    active: HashMap<ChannelKey, (u64, SecureStream)>,
    /// Per job: the highest attempt seen and the lowest attempt not released.
    jobs: HashMap<JobId, Attempts>,
}

/// The half of a channel that arrived first.
enum Pending {
    /// The producer connected (when, and its place among the server's
    /// connections); no receiver claimed the channel yet.
    Connection(SecureStream, Instant, Admitted),
    /// The receiver was claimed; the producer has not connected yet.
    Receiver(InboundBridge),
}

#[derive(Default, Clone, Copy)]
struct Attempts {
    highest: u32,
    floor: u32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few maps updated in one step each: still consistent after a panic elsewhere.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Records that `key` is in use; false if its attempt was released.
    fn admit(&mut self, key: &ChannelKey) -> bool {
        let attempts = self.jobs.entry(key.job).or_default();
        attempts.highest = attempts.highest.max(key.attempt);
        key.attempt >= attempts.floor
    }

    /// Drops the pending halves and shuts down the connections of the attempts of `job` below `floor`.
    fn release(&mut self, job: JobId, floor: u32) {
        let attempts = self.jobs.entry(job).or_default();
        attempts.floor = attempts.floor.max(floor);
        let released = |k: &ChannelKey| k.job == job && k.attempt < floor;
        self.pending.retain(|k, _| !released(k));
        self.active.retain(|k, (_, stream)| {
            if released(k) {
                let _ = stream.shutdown(Shutdown::Both);
            }
            !released(k)
        });
    }
}

impl DataServer {
    /// Binds `bind` (e.g. "127.0.0.1:0") and spawns the acceptor thread.
    /// Connections are secured by `security` and must prove `secret`.
    pub(crate) fn start(bind: &str, security: Security, secret: JobSecret) -> Result<Arc<DataServer>> {
        let listener = TcpListener::bind(bind).map_err(|e| {
            Error::io(format!("cannot bind the data port at {bind} (is it in use? pick another address or port)"), e)
        })?;
        let address = listener.local_addr().map_err(|e| Error::io("cannot read the data port's address", e))?;
        let shared = Arc::new(Shared {
            state: Mutex::default(),
            closed: AtomicBool::new(false),
            next_connection: AtomicU64::new(0),
            auth: Arc::new(DataAuth { security, secret }),
            admission: Admission::new(MAX_CONNECTIONS),
        });
        let acceptor = shared.clone();
        std::thread::Builder::new()
            .name("sluice-net-accept".into())
            .spawn(move || accept_loop(listener, acceptor))
            .map_err(|e| Error::io("cannot start the data port's acceptor thread", e))?;
        tracing::info!("data server listening on {address}");
        Ok(Arc::new(DataServer { shared, address }))
    }

    /// The address producers connect to (if bound to an unspecified address
    /// like 0.0.0.0, advertise a reachable host with this port instead).
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// How this process's producers connect to other processes' servers.
    pub(crate) fn auth(&self) -> Arc<DataAuth> {
        self.shared.auth.clone()
    }

    /// The consumer's end of channel `key` whose producer is remote: an
    /// [`AnyBox`] holding a `Receiver<StreamElement<T>>` of capacity
    /// `capacity`, `T` being `ty`'s type. The producer's connection for `key`
    /// may arrive before or after this call; either way it is bridged into
    /// this receiver.
    pub(crate) fn receiver(&self, key: ChannelKey, ty: &dyn StreamType, capacity: usize) -> Result<AnyBox> {
        let (receiver, bridge) = ty.inbound_bridge(capacity);
        let mut state = self.shared.lock();
        if self.shared.closed.load(Ordering::SeqCst) {
            return Err(Error::ChannelClosed(format!("the data server is shut down; cannot receive channel {key}")));
        }
        if !state.admit(&key) {
            return Err(Error::ChannelClosed(format!("channel {key} belongs to a released job attempt")));
        }
        if state.active.contains_key(&key) || matches!(state.pending.get(&key), Some(Pending::Receiver(_))) {
            return Err(Error::InvalidGraph(format!("channel {key} was claimed twice")));
        }
        match state.pending.remove(&key) {
            None | Some(Pending::Receiver(_)) => {
                state.pending.insert(key, Pending::Receiver(bridge));
            }
            Some(Pending::Connection(stream, _, admitted)) => {
                let id = activate(&self.shared, &mut state, key, &stream)?;
                drop(state);
                let shared = self.shared.clone();
                std::thread::Builder::new()
                    .name("sluice-net-in".into())
                    .spawn(move || {
                        let _admitted = admitted;
                        run_inbound(&shared, key, id, stream, bridge)
                    })
                    .map_err(|e| Error::io(format!("cannot start the bridge thread of channel {key}"), e))?;
            }
        }
        Ok(receiver)
    }

    /// Forgets pending channels and drops the connections of `job` (all
    /// attempts seen so far): the job ended or restarts. Connections of these
    /// attempts arriving later are refused.
    // Job processes end with their job, dropping the server; kept for tests
    // and for a future TaskManager hosting several jobs' channels.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn release_job(&self, job: JobId) {
        let mut state = self.shared.lock();
        let floor = state.jobs.get(&job).map_or(0, |a| a.highest.saturating_add(1));
        state.release(job, floor);
    }

    /// Like [`DataServer::release_job`], only for the attempts of `job` older than `attempt`.
    pub(crate) fn release_attempts_before(&self, job: JobId, attempt: u32) {
        self.shared.lock().release(job, attempt);
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        {
            let mut state = self.shared.lock();
            state.pending.clear();
            for (_, (_, stream)) in state.active.drain() {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        // Wake the acceptor so it sees `closed` and releases the port.
        let mut wake = self.address;
        if wake.ip().is_unspecified() {
            wake.set_ip(if wake.is_ipv4() { Ipv4Addr::LOCALHOST.into() } else { Ipv6Addr::LOCALHOST.into() });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
    }
}

/// Registers `stream` as the running connection of `key`; returns its id.
fn activate(shared: &Shared, state: &mut State, key: ChannelKey, stream: &SecureStream) -> Result<u64> {
    let handle = stream.try_clone().map_err(|e| Error::io(format!("cannot use the connection of channel {key}"), e))?;
    let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    state.active.insert(key, (id, handle));
    Ok(id)
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for connection in listener.incoming() {
        if shared.closed.load(Ordering::SeqCst) {
            break;
        }
        match connection {
            Ok(socket) => {
                let Some(admitted) = shared.admission.try_admit() else { continue };
                let shared = shared.clone();
                let spawned = std::thread::Builder::new()
                    .name("sluice-net-in".into())
                    .spawn(move || handshake(&shared, socket, admitted));
                if let Err(e) = spawned {
                    tracing::error!("cannot start a thread for a data connection: {e}");
                }
            }
            Err(e) => {
                tracing::warn!("accepting a data connection failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    tracing::debug!("data server acceptor stopped");
}

/// Secures an accepted connection, reads its hello and pairs it with its receiver.
fn handshake(shared: &Arc<Shared>, socket: TcpStream, admitted: Admitted) {
    let peer = socket.peer_addr().map_or_else(|_| "an unknown peer".to_string(), |a| a.to_string());
    let stream = match shared.auth.security.accept(socket) {
        Ok(stream) => stream,
        Err(e) => {
            if !shared.closed.load(Ordering::SeqCst) {
                tracing::warn!("rejected a data connection from {peer}: the secure handshake failed ({e})");
            }
            return;
        }
    };
    let key = match read_hello(&stream, &shared.auth.secret) {
        Ok(key) => key,
        Err(reason) => {
            if !shared.closed.load(Ordering::SeqCst) {
                tracing::warn!("rejected a data connection from {peer}: {reason}");
            }
            return;
        }
    };
    if let Err(e) = stream.set_read_timeout(None).and_then(|()| stream.set_nodelay(true)) {
        tracing::warn!("rejected the data connection of channel {key} from {peer}: {e}");
        return;
    }
    let mut state = shared.lock();
    if shared.closed.load(Ordering::SeqCst) {
        return;
    }
    if !state.admit(&key) {
        tracing::info!("refused the data connection of channel {key} from {peer}: its job attempt was released");
        return;
    }
    let now = Instant::now();
    state.pending.retain(|k, p| match p {
        Pending::Connection(_, since, _) if now.duration_since(*since) > PENDING_TTL => {
            tracing::warn!("channel {k}: no receiver claimed it within {PENDING_TTL:?}; dropped its connection");
            false
        }
        _ => true,
    });
    if state.active.contains_key(&key) || matches!(state.pending.get(&key), Some(Pending::Connection(..))) {
        tracing::warn!("rejected a second data connection for channel {key} from {peer}");
        return;
    }
    match state.pending.remove(&key) {
        None | Some(Pending::Connection(..)) => {
            tracing::debug!("channel {key}: producer {peer} connected before the receiver was claimed");
            state.pending.insert(key, Pending::Connection(stream, now, admitted));
        }
        Some(Pending::Receiver(bridge)) => match activate(shared, &mut state, key, &stream) {
            Ok(id) => {
                drop(state);
                run_inbound(shared, key, id, stream, bridge);
                drop(admitted);
            }
            Err(e) => tracing::error!("{e}"),
        },
    }
}

fn read_hello(mut stream: &SecureStream, secret: &JobSecret) -> std::result::Result<ChannelKey, String> {
    stream.set_read_timeout(Some(HELLO_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 8];
    stream.read_exact(&mut magic).map_err(|e| format!("no hello ({e})"))?;
    if magic != MAGIC {
        return Err("not a Sluice data connection (bad magic)".into());
    }
    let mut head = [0u8; 6];
    stream.read_exact(&mut head).map_err(|e| format!("truncated hello ({e})"))?;
    let version = u16::from_le_bytes([head[0], head[1]]);
    if version != VERSION {
        return Err(format!(
            "data protocol version {version}, this process speaks {VERSION}; run the same Sluice version everywhere"
        ));
    }
    let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
    if len > MAX_HELLO {
        return Err(format!("hello of {len} bytes is too long"));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).map_err(|e| format!("truncated hello ({e})"))?;
    let key: ChannelKey = postcard::from_bytes(&payload).map_err(|e| format!("undecodable channel in hello ({e})"))?;
    let mut proof = [0u8; 32];
    stream.read_exact(&mut proof).map_err(|e| format!("truncated hello ({e})"))?;
    if !JobSecret::from_bytes(proof).matches(secret) {
        return Err(format!("channel {key}: wrong job secret; the peer does not belong to the job"));
    }
    Ok(key)
}

fn hello(key: &ChannelKey, secret: &JobSecret) -> Result<Vec<u8>> {
    let encoded = postcard::to_stdvec(key).map_err(|e| Error::Network(format!("cannot encode channel {key}: {e}")))?;
    let mut bytes = Vec::with_capacity(14 + encoded.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&encoded);
    bytes.extend_from_slice(secret.as_bytes());
    Ok(bytes)
}

/// Runs `bridge` on the connection of `key`, then closes it and logs how it ended.
fn run_inbound(shared: &Shared, key: ChannelKey, id: u64, stream: SecureStream, bridge: InboundBridge) {
    let result = bridge(&stream, &key);
    let _ = stream.shutdown(Shutdown::Both);
    let released = {
        let mut state = shared.lock();
        let ours = state.active.get(&key).is_some_and(|(active, _)| *active == id);
        if ours {
            state.active.remove(&key);
        }
        !ours
    };
    match result {
        Ok(()) => tracing::debug!("channel {key}: inbound bridge finished"),
        Err(e) if released => tracing::debug!("channel {key}: released while open ({e})"),
        Err(e) => tracing::warn!("channel {key}: {e}; the consuming task fails"),
    }
}

/// The consumer's end of a channel fed from a connection: the receiver and
/// the bridge that decodes the connection into it.
pub(crate) fn inbound<T: Data>(capacity: usize) -> (AnyBox, InboundBridge) {
    let (tx, rx) = crossbeam_channel::bounded::<StreamElement<T>>(capacity);
    let credits = u32::try_from(capacity.max(1)).unwrap_or(u32::MAX);
    (Box::new(rx), Box::new(move |stream, key| decode_into(stream, key, &tx, credits)))
}

fn decode_into<T: Data>(
    stream: &SecureStream,
    key: &ChannelKey,
    tx: &Sender<StreamElement<T>>,
    credits: u32,
) -> Result<()> {
    let broken = |e: io::Error| Error::Network(format!("connection of channel {key} broke: {e}"));
    let mut writer = stream;
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    writer.write_all(&credits.to_le_bytes()).map_err(broken)?;
    let mut owed = 0u32;
    let mut frame = Vec::new();
    loop {
        // Return credits before the next read could block: the producer may be waiting for them.
        if owed > 0 && reader.buffer().is_empty() {
            writer.write_all(&owed.to_le_bytes()).map_err(broken)?;
            owed = 0;
        }
        if !read_frame(&mut reader, &mut frame).map_err(broken)? {
            return Err(Error::Network(format!(
                "the producer of channel {key} closed the connection before end of stream"
            )));
        }
        let decoded = postcard::take_from_bytes::<StreamElement<T>>(&frame).map_err(|e| e.to_string());
        let element = decoded
            .and_then(|(element, rest)| match rest.len() {
                0 => Ok(element),
                n => Err(format!("{n} bytes after the element")),
            })
            .map_err(|e| {
                Error::Network(format!(
                    "cannot decode an element of channel {key}: {e}; do both sides run the same job build?"
                ))
            })?;
        let end = matches!(element, StreamElement::EndOfStream);
        if tx.send(element).is_err() {
            tracing::debug!("channel {key}: the consuming task stopped reading; closing the connection");
            return Ok(());
        }
        if end {
            return Ok(());
        }
        owed = owed.saturating_add(1);
    }
}

/// Reads one length-prefixed frame into `buf`; false on a clean end of stream before it.
fn read_frame(reader: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    loop {
        match reader.read(&mut len[..1]) {
            Ok(0) => return Ok(false),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    reader.read_exact(&mut len[1..])?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("frame of {len} bytes exceeds the limit")));
    }
    buf.clear();
    // Grows with the data that arrives, so a garbled length cannot allocate up front.
    reader.take(len as u64).read_to_end(buf)?;
    if buf.len() < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(true)
}

/// The producer's end of a channel forwarded over a connection: the sender
/// and the bridge thread (which returns why it stopped).
pub(crate) fn outbound<T: Data>(capacity: usize, link: OutboundLink) -> Result<(AnyBox, JoinHandle<Result<()>>)> {
    let (tx, rx) = crossbeam_channel::bounded::<StreamElement<T>>(capacity);
    let key = link.key;
    let bridge = std::thread::Builder::new()
        .name("sluice-net-out".into())
        .spawn(move || {
            let result = forward(&link, rx);
            match &result {
                Ok(()) => tracing::debug!("channel {}: outbound bridge finished", link.key),
                Err(e) => tracing::error!("{e}; the producing task fails"),
            }
            result
        })
        .map_err(|e| Error::io(format!("cannot start the bridge thread of channel {key}"), e))?;
    Ok((Box::new(tx), bridge))
}

/// Connects to the consumer of `link.key`, retrying until the timeout, and
/// secures the connection.
fn connect(link: &OutboundLink) -> Result<SecureStream> {
    let deadline = Instant::now() + link.connect_timeout;
    let mut backoff = Duration::from_millis(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = left.clamp(Duration::from_millis(10), Duration::from_secs(1));
        match TcpStream::connect_timeout(&link.addr, attempt) {
            Ok(socket) => {
                return link.auth.security.connect(socket).map_err(|e| {
                    Error::Network(format!(
                        "channel {}: the secure handshake with its consumer at {} failed: {e}; do both \
                         TaskManagers use certificates of the same cluster CA (security.ssl.internal.*)?",
                        link.key, link.addr
                    ))
                })
            }
            Err(e) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Network(format!(
                        "cannot connect channel {} to its consumer at {} within {:?}: {e}; check that the \
                         TaskManager there is running and its data port is reachable",
                        link.key, link.addr, link.connect_timeout
                    )));
                }
                std::thread::sleep(backoff.min(left));
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// The producer's bridge: connects, then sends the elements of `rx` as credits allow.
fn forward<T: Data>(link: &OutboundLink, rx: Receiver<StreamElement<T>>) -> Result<()> {
    let stream = connect(link)?;
    let result = forward_on(&stream, link, &rx);
    let _ = stream.shutdown(Shutdown::Both);
    result
}

fn forward_on<T: Data>(stream: &SecureStream, link: &OutboundLink, rx: &Receiver<StreamElement<T>>) -> Result<()> {
    let key = link.key;
    let broken = |e: io::Error| Error::Network(format!("connection of channel {key} to {} broke: {e}", link.addr));
    let gone = || {
        Error::Network(format!(
            "the consumer of channel {key} at {} closed the connection (its TaskManager went away or released the job)",
            link.addr
        ))
    };
    stream.set_nodelay(true).map_err(broken)?;
    let mut out = BufWriter::with_capacity(64 * 1024, stream);
    out.write_all(&hello(&key, &link.auth.secret)?).map_err(broken)?;
    let credits_rx = spawn_credit_reader(stream, key)?;
    let mut credits = 0u64;
    let mut frame = Vec::new();
    loop {
        while let Ok(n) = credits_rx.try_recv() {
            credits += u64::from(n);
        }
        if credits == 0 {
            out.flush().map_err(broken)?;
            credits += u64::from(credits_rx.recv().map_err(|_| gone())?);
            continue;
        }
        let element = match rx.try_recv() {
            Ok(element) => element,
            Err(TryRecvError::Disconnected) => return producer_gone(&key),
            Err(TryRecvError::Empty) => {
                out.flush().map_err(broken)?;
                let mut select = Select::new();
                let elements = select.recv(rx);
                select.recv(&credits_rx);
                let op = select.select();
                if op.index() != elements {
                    credits += u64::from(op.recv(&credits_rx).map_err(|_| gone())?);
                    continue;
                }
                match op.recv(rx) {
                    Ok(element) => element,
                    Err(_) => return producer_gone(&key),
                }
            }
        };
        let end = matches!(element, StreamElement::EndOfStream);
        frame.clear();
        frame.extend_from_slice(&[0; 4]);
        frame = postcard::to_extend(&element, std::mem::take(&mut frame))
            .map_err(|e| Error::Network(format!("cannot encode an element of channel {key}: {e}")))?;
        let len = frame.len() - 4;
        if len > MAX_FRAME {
            return Err(Error::Network(format!(
                "an element of channel {key} encodes to {len} bytes, over the {MAX_FRAME}-byte frame limit; \
                 lower the batch size or split the records"
            )));
        }
        frame[..4].copy_from_slice(&(len as u32).to_le_bytes());
        out.write_all(&frame).map_err(broken)?;
        credits -= 1;
        if end {
            out.flush().map_err(broken)?;
            stream.shutdown(Shutdown::Write).map_err(broken)?;
            // Wait for the consumer to close, so no unread credit turns the close into a reset.
            let deadline = Instant::now() + LINGER;
            while credits_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok() {}
            return Ok(());
        }
    }
}

fn producer_gone(key: &ChannelKey) -> Result<()> {
    tracing::debug!("channel {key}: the producing task ended without end of stream; closing the connection");
    Ok(())
}

/// Reads credits from the connection into a channel, until it closes.
fn spawn_credit_reader(stream: &SecureStream, key: ChannelKey) -> Result<Receiver<u32>> {
    let mut reader =
        stream.try_clone().map_err(|e| Error::io(format!("cannot use the connection of channel {key}"), e))?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("sluice-net-credit".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            let mut credit = [0u8; 4];
            while reader.read_exact(&mut credit).is_ok() {
                if tx.send(u32::from_le_bytes(credit)).is_err() {
                    break;
                }
            }
        })
        .map_err(|e| Error::io(format!("cannot start the credit thread of channel {key}"), e))?;
    Ok(rx)
}

#[cfg(test)]
mod tests;
