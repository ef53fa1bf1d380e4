//! Gateways: where a control-plane component sends its messages.
//!
//! A [`Gateway<M>`] delivers messages of one protocol type `M` to one peer.
//! What carries them is a [`Transport`]: an in-process channel in the mini
//! cluster ([`Gateway::channel`]), a TCP link between a job's driver and its
//! task processes (`remote::wire::LinkTransport`). The job
//! master and the TaskManager hold gateways and never learn which transport
//! is behind one, so a message type is written once and a new transport is
//! one `impl`.
//!
//! Lifecycle: a gateway is created when its peer connects (or, in the mini
//! cluster, when the cluster starts), cloned freely, and fails every
//! [`send`](Gateway::send) with [`GatewayClosed`] once the peer is gone.
//! Sends never block on the peer: a channel is unbounded, and a link queues
//! to its writer thread.

use std::fmt;
use std::sync::Arc;

/// The peer behind a gateway is gone: its channel was dropped or its
/// connection closed. The component that owns the peer's lifecycle (the
/// job master for TaskManagers, a TaskManager for its job master) learns of
/// it separately and reacts there; a failed send needs no other handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayClosed;

impl fmt::Display for GatewayClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the peer is gone (its channel or connection closed)")
    }
}

impl std::error::Error for GatewayClosed {}

/// Carries messages of type `M` to one peer.
///
/// Implementations must not block the caller on the peer (the job master's
/// event loop and the task threads send through gateways), and must report
/// a gone peer as [`GatewayClosed`] rather than dropping messages silently.
pub trait Transport<M>: Send + Sync {
    /// Hands one message to the transport.
    fn send(&self, msg: M) -> Result<(), GatewayClosed>;

    /// Closes the connection, if there is one (the peer then sees its end).
    /// The default does nothing: an in-process channel ends when its last
    /// sender is dropped.
    fn close(&self) {}

    /// A short description of the peer for logs (`in-process`, an address).
    fn peer(&self) -> String;
}

/// A handle on one peer's inbox; cheap to clone.
pub struct Gateway<M> {
    transport: Arc<dyn Transport<M>>,
}

impl<M> Clone for Gateway<M> {
    fn clone(&self) -> Self {
        Gateway { transport: self.transport.clone() }
    }
}

impl<M> fmt::Debug for Gateway<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gateway({})", self.transport.peer())
    }
}

impl<M: 'static> Gateway<M> {
    /// A gateway over any transport.
    pub fn new(transport: impl Transport<M> + 'static) -> Self {
        Gateway { transport: Arc::new(transport) }
    }

    /// A gateway into an in-process inbox whose message type `T` wraps `M`
    /// (`From<M>`), e.g. a TaskManager's reports into the job master's
    /// [`ToJobManager`](super::inbox::ToJobManager).
    pub fn channel<T>(inbox: crossbeam_channel::Sender<T>) -> Self
    where
        T: From<M> + Send + 'static,
        M: Send,
    {
        Gateway::new(ChannelTransport { inbox })
    }

    /// Sends one message.
    pub fn send(&self, msg: M) -> Result<(), GatewayClosed> {
        self.transport.send(msg)
    }

    /// Closes the connection to the peer (see [`Transport::close`]).
    pub fn close(&self) {
        self.transport.close()
    }
}

struct ChannelTransport<T> {
    inbox: crossbeam_channel::Sender<T>,
}

impl<M, T: From<M> + Send> Transport<M> for ChannelTransport<T> {
    fn send(&self, msg: M) -> Result<(), GatewayClosed> {
        self.inbox.send(T::from(msg)).map_err(|_| GatewayClosed)
    }

    fn peer(&self) -> String {
        "in-process".into()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Inbox {
        Wrapped(u32),
    }

    impl From<u32> for Inbox {
        fn from(v: u32) -> Self {
            Inbox::Wrapped(v)
        }
    }

    #[test]
    fn a_channel_gateway_wraps_into_the_inbox_type_and_reports_a_gone_peer() {
        let (tx, rx) = crossbeam_channel::unbounded::<Inbox>();
        let gw: Gateway<u32> = Gateway::channel(tx);
        gw.clone().send(7).unwrap();
        assert_eq!(rx.recv().unwrap(), Inbox::Wrapped(7));
        drop(rx);
        assert_eq!(gw.send(8), Err(GatewayClosed));
    }
}
