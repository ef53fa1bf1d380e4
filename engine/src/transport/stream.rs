//! [`SecureStream`]: a TCP connection that is plain or TLS, used like a
//! `TcpStream` — cloned with [`SecureStream::try_clone`] so that one thread
//! reads while another writes, as the RPC links and data channels do.
//!
//! With TLS the clones share one rustls connection behind a mutex that is
//! never held across a blocking socket call: a reader takes raw bytes from
//! the socket first and hands them to rustls afterwards, and a writer
//! encrypts under the lock and writes the records after releasing it (under
//! a second lock that keeps records in order). So a reader blocked on a
//! quiet peer never stops a writer, and the reverse.

use rustls::Connection;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::time::Duration;

/// How many raw bytes a reader takes from the socket at once.
const READ_CHUNK: usize = 32 * 1024;

/// A connected stream, plain TCP or TLS over TCP (see the module docs).
#[derive(Debug)]
pub struct SecureStream {
    socket: TcpStream,
    tls: Option<Arc<TlsState>>,
}

struct TlsState {
    conn: Mutex<Connection>,
    /// Raw bytes read from the socket that rustls has not taken yet, and
    /// whether the socket reached its end. Held by the one reading thread.
    read: Mutex<ReadSide>,
    /// Held while records are written to the socket, to keep them in order.
    write: Mutex<()>,
    /// The peer's certificate chain was verified (mutual TLS).
    peer_verified: bool,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState").field("peer_verified", &self.peer_verified).finish()
    }
}

#[derive(Default)]
struct ReadSide {
    pending: Vec<u8>,
    eof: bool,
}

fn lock<T>(m: &Mutex<T>) -> io::Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| io::Error::other("a thread panicked while using this TLS connection"))
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl SecureStream {
    /// A plain TCP stream.
    pub fn plain(socket: TcpStream) -> Self {
        SecureStream { socket, tls: None }
    }

    /// Runs the TLS handshake of `conn` on `socket` (within `timeout`), then
    /// wraps both.
    pub(crate) fn handshake(socket: TcpStream, mut conn: Connection, timeout: Duration) -> io::Result<Self> {
        socket.set_read_timeout(Some(timeout))?;
        socket.set_write_timeout(Some(timeout))?;
        let mut io = &socket;
        while conn.is_handshaking() {
            conn.complete_io(&mut io)?;
        }
        while conn.wants_write() {
            conn.write_tls(&mut io)?;
        }
        socket.set_read_timeout(None)?;
        socket.set_write_timeout(None)?;
        let peer_verified = conn.peer_certificates().is_some_and(|c| !c.is_empty());
        let state = TlsState {
            conn: Mutex::new(conn),
            read: Mutex::new(ReadSide::default()),
            write: Mutex::new(()),
            peer_verified,
        };
        Ok(SecureStream { socket, tls: Some(Arc::new(state)) })
    }

    /// Whether this stream is TLS with a verified peer certificate.
    pub fn is_mutual_tls(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.peer_verified)
    }

    /// Another handle to the same connection (one thread may read while
    /// another writes).
    pub fn try_clone(&self) -> io::Result<SecureStream> {
        Ok(SecureStream { socket: self.socket.try_clone()?, tls: self.tls.clone() })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.socket.peer_addr()
    }

    /// See [`TcpStream::set_read_timeout`].
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_read_timeout(timeout)
    }

    /// See [`TcpStream::set_write_timeout`].
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.socket.set_write_timeout(timeout)
    }

    /// See [`TcpStream::set_nodelay`].
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.socket.set_nodelay(nodelay)
    }

    /// Shuts down one or both directions. With TLS, closing the writing
    /// side first sends `close_notify`, unless another thread is blocked
    /// writing (then the socket is shut down without it). A connection the
    /// peer already dropped counts as shut down.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if let (Some(tls), Shutdown::Write | Shutdown::Both) = (&self.tls, how) {
            if let Ok(_order) = tls.write.try_lock() {
                let records = {
                    let mut conn = lock(&tls.conn)?;
                    conn.send_close_notify();
                    drain(&mut conn)?
                };
                let _ = (&self.socket).write_all(&records);
            }
        }
        match self.socket.shutdown(how) {
            // The peer is gone already: nothing is left to shut down.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }

    fn read_tls(&self, tls: &TlsState, buf: &mut [u8]) -> io::Result<usize> {
        let mut side = lock(&tls.read)?;
        loop {
            let mut fed = false;
            let mut flush = false;
            {
                let mut conn = lock(&tls.conn)?;
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if side.eof {
                    return Ok(0);
                }
                if !side.pending.is_empty() {
                    let taken = conn.read_tls(&mut &side.pending[..])?;
                    side.pending.drain(..taken);
                    conn.process_new_packets().map_err(tls_error)?;
                    if taken == 0 {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS input cannot be processed"));
                    }
                    flush = conn.wants_write();
                    fed = true;
                }
            }
            if flush {
                self.flush_tls(tls, false)?;
            }
            if fed {
                // The records just processed may hold plaintext: serve it before blocking on the socket.
                continue;
            }
            {
                let start = side.pending.len();
                side.pending.resize(start + READ_CHUNK, 0);
                let got = (&self.socket).read(&mut side.pending[start..]);
                let n = match got {
                    Ok(n) => n,
                    Err(e) => {
                        side.pending.truncate(start);
                        return Err(e);
                    }
                };
                side.pending.truncate(start + n);
                if n == 0 {
                    side.eof = true;
                    let mut conn = lock(&tls.conn)?;
                    // Tell rustls the stream ended: it reports a missing close_notify.
                    conn.read_tls(&mut &[][..])?;
                    conn.process_new_packets().map_err(tls_error)?;
                    match conn.reader().read(buf) {
                        Ok(n) => return Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Writes out the records rustls has queued. With `wait`, waits for the
    /// writing turn; without, leaves them to the current writer.
    fn flush_tls(&self, tls: &TlsState, wait: bool) -> io::Result<()> {
        let _order = if wait {
            lock(&tls.write)?
        } else {
            match tls.write.try_lock() {
                Ok(g) => g,
                Err(TryLockError::WouldBlock) => return Ok(()),
                Err(TryLockError::Poisoned(_)) => {
                    return Err(io::Error::other("a thread panicked while writing this TLS connection"))
                }
            }
        };
        let records = drain(&mut *lock(&tls.conn)?)?;
        (&self.socket).write_all(&records)
    }

    fn write_tls(&self, tls: &TlsState, buf: &[u8]) -> io::Result<usize> {
        let _order = lock(&tls.write)?;
        let (n, records) = {
            let mut conn = lock(&tls.conn)?;
            let n = conn.writer().write(buf)?;
            (n, drain(&mut conn)?)
        };
        (&self.socket).write_all(&records)?;
        Ok(n)
    }
}

/// Takes the records rustls has ready to send.
fn drain(conn: &mut Connection) -> io::Result<Vec<u8>> {
    let mut records = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut records)?;
    }
    Ok(records)
}

impl Read for &SecureStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => (&self.socket).read(buf),
            Some(tls) => self.read_tls(tls, buf),
        }
    }
}

impl Write for &SecureStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.tls {
            None => (&self.socket).write(buf),
            Some(tls) => self.write_tls(tls, buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.tls {
            None => (&self.socket).flush(),
            Some(tls) => self.flush_tls(tls, true),
        }
    }
}

impl Read for SecureStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for SecureStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self).flush()
    }
}
