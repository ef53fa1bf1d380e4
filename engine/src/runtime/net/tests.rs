//! Tests of the TCP data plane: round trips, credits, failures.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::runtime::element::{CheckpointBarrier, Watermark};
use crate::runtime::erased::{downcast, TypedStream};
use crossbeam_channel::{RecvTimeoutError, SendTimeoutError};
use sluice_checkpoint::{CheckpointId, CheckpointKind};
use std::fmt::Debug;
use std::sync::atomic::AtomicUsize;

/// Generous upper limit of every wait (never reached when the code is right).
const WAIT: Duration = Duration::from_secs(10);

/// The security and job secret every test server and sender shares.
fn test_auth() -> Arc<DataAuth> {
    static AUTH: std::sync::OnceLock<Arc<DataAuth>> = std::sync::OnceLock::new();
    AUTH.get_or_init(|| Arc::new(DataAuth { security: Security::plaintext(), secret: JobSecret::generate().unwrap() }))
        .clone()
}

fn start_server() -> Arc<DataServer> {
    let auth = test_auth();
    DataServer::start("127.0.0.1:0", auth.security.clone(), auth.secret.clone()).unwrap()
}

fn key(job: JobId, attempt: u32, edge: usize) -> ChannelKey {
    ChannelKey { job, attempt, edge, producer: 0, consumer: 1 }
}

fn sample<T: Clone>(a: T, b: T) -> Vec<StreamElement<T>> {
    vec![
        StreamElement::Records(vec![a.clone(), b.clone()]),
        StreamElement::Watermark(Watermark(42)),
        StreamElement::Barrier(CheckpointBarrier {
            id: CheckpointId(7),
            timestamp_ms: 1234,
            kind: CheckpointKind::Savepoint,
        }),
        StreamElement::Idle,
        StreamElement::Records(vec![]),
        StreamElement::Records(vec![b, a]),
        StreamElement::Watermark(Watermark::MAX),
        StreamElement::EndOfStream,
    ]
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn claim<T: Data>(server: &DataServer, key: ChannelKey, capacity: usize) -> Receiver<StreamElement<T>> {
    let rx = server.receiver(key, TypedStream::<T>::arc().as_ref(), capacity).unwrap();
    downcast::<Receiver<StreamElement<T>>>(rx, "a test receiver").unwrap()
}

fn connect_sender<T: Data>(
    key: ChannelKey,
    addr: SocketAddr,
    capacity: usize,
    timeout: Duration,
) -> (Sender<StreamElement<T>>, JoinHandle<Result<()>>) {
    connect_sender_with::<T>(key, addr, capacity, timeout, test_auth())
}

fn connect_sender_with<T: Data>(
    key: ChannelKey,
    addr: SocketAddr,
    capacity: usize,
    timeout: Duration,
    auth: Arc<DataAuth>,
) -> (Sender<StreamElement<T>>, JoinHandle<Result<()>>) {
    let link = OutboundLink { key, addr, connect_timeout: timeout, auth };
    let (tx, bridge) = TypedStream::<T>::arc().outbound_bridge(capacity, link).unwrap();
    (downcast::<Sender<StreamElement<T>>>(tx, "a test sender").unwrap(), bridge)
}

fn parked(server: &DataServer, key: ChannelKey) -> bool {
    matches!(server.shared.lock().pending.get(&key), Some(Pending::Connection(..)))
}

/// Sends `elements` over channel `key` into `server` and checks they arrive in order.
fn round_trip<T: Data + PartialEq + Debug>(
    server: &DataServer,
    key: ChannelKey,
    claim_first: bool,
    elements: Vec<StreamElement<T>>,
) {
    let capacity = 2;
    let early = claim_first.then(|| claim::<T>(server, key, capacity));
    let (tx, bridge) = connect_sender::<T>(key, server.address(), capacity, WAIT);
    let to_send = elements.clone();
    let producer = std::thread::spawn(move || to_send.into_iter().try_for_each(|el| tx.send(el)));
    let rx = early.unwrap_or_else(|| {
        wait_until("the connection is parked", || parked(server, key));
        claim::<T>(server, key, capacity)
    });
    let mut got = Vec::new();
    while got.last() != Some(&StreamElement::EndOfStream) {
        got.push(rx.recv_timeout(WAIT).expect("an element"));
    }
    assert_eq!(got, elements);
    producer.join().unwrap().unwrap();
    bridge.join().unwrap().unwrap();
    assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected), "the bridge hangs up after end of stream");
    wait_until("the connection is forgotten", || server.shared.lock().active.is_empty());
}

#[test]
fn elements_round_trip_in_order_between_two_servers() {
    let (a, b) = (start_server(), start_server());
    assert_ne!(a.address(), b.address());
    let job = JobId::generate();
    for (edge, claim_first) in [(0, true), (1, false)] {
        round_trip(&a, key(job, 0, edge), claim_first, sample("hello".to_string(), String::new()));
        let pairs = sample(("to be".to_string(), -3i64), ("or not".to_string(), i64::MAX));
        round_trip(&b, key(job, 0, edge), claim_first, pairs);
    }
}

#[test]
fn a_consumer_that_does_not_read_blocks_the_producer() {
    let server = start_server();
    let (c_out, c_in) = (4, 3);
    let k = key(JobId::generate(), 0, 0);
    let rx = claim::<i64>(&server, k, c_in);
    let (tx, bridge) = connect_sender::<i64>(k, server.address(), c_out, WAIT);
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..200 {
            tx.send(StreamElement::Records(vec![i])).unwrap();
            count.fetch_add(1, Ordering::SeqCst);
        }
        tx.send(StreamElement::EndOfStream).unwrap();
    });
    // The consumer's channel fills: elements crossed the connection.
    wait_until("the consumer's channel is full", || rx.is_full());
    // Elements the producer's sends can have handed over: its own channel, the
    // consumer's channel, and the initial credits' worth in flight or in the
    // consumer bridge's hand.
    let bound = c_out + 2 * c_in;
    let (mut last, mut since) = (usize::MAX, Instant::now());
    let deadline = Instant::now() + WAIT;
    while since.elapsed() < Duration::from_millis(300) {
        let n = accepted.load(Ordering::SeqCst);
        assert!(n <= bound, "{n} elements accepted with capacities {c_out} + {c_in}, expected at most {bound}");
        if n != last {
            (last, since) = (n, Instant::now());
        }
        assert!(Instant::now() < deadline, "the producer never blocked");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rx.len(), c_in);
    // Reading releases the producer; everything arrives in order.
    for i in 0..200 {
        assert_eq!(rx.recv_timeout(WAIT), Ok(StreamElement::Records(vec![i])));
    }
    assert_eq!(rx.recv_timeout(WAIT), Ok(StreamElement::EndOfStream));
    producer.join().unwrap();
    bridge.join().unwrap().unwrap();
}

/// Asserts that the producer's sends fail within [`WAIT`].
fn assert_sends_fail<T: Clone>(tx: &Sender<StreamElement<T>>, element: StreamElement<T>) {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the producer's sends kept succeeding");
        match tx.send_timeout(element.clone(), Duration::from_millis(50)) {
            Err(SendTimeoutError::Disconnected(_)) => return,
            Ok(()) | Err(SendTimeoutError::Timeout(_)) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

#[test]
fn dropping_the_server_disconnects_both_ends() {
    let server = start_server();
    let k = key(JobId::generate(), 0, 0);
    let rx = claim::<String>(&server, k, 4);
    let ty = TypedStream::<String>::arc();
    let tx = remote_sender(k, server.address(), ty.as_ref(), 4, WAIT, test_auth()).unwrap();
    let tx = downcast::<Sender<StreamElement<String>>>(tx, "a test sender").unwrap();
    let first = StreamElement::Records(vec!["a".to_string()]);
    tx.send(first.clone()).unwrap();
    assert_eq!(rx.recv_timeout(WAIT), Ok(first.clone()));
    drop(server);
    assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
    assert_sends_fail(&tx, first);
}

#[test]
fn releasing_the_job_cuts_its_connections_and_refuses_late_ones() {
    let server = start_server();
    let job = JobId::generate();
    let (live, waiting) = (key(job, 0, 0), key(job, 0, 1));
    let rx = claim::<i64>(&server, live, 4);
    let unmatched = claim::<i64>(&server, waiting, 4);
    let (tx, bridge) = connect_sender::<i64>(live, server.address(), 4, WAIT);
    tx.send(StreamElement::Watermark(Watermark(1))).unwrap();
    assert_eq!(rx.recv_timeout(WAIT), Ok(StreamElement::Watermark(Watermark(1))));

    server.release_job(job);
    assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
    assert_eq!(unmatched.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
    assert_sends_fail(&tx, StreamElement::Idle);
    let err = bridge.join().unwrap().unwrap_err().to_string();
    assert!(err.contains(&live.to_string()), "{err}");

    // A late producer of the released attempt is turned away; the next attempt works.
    let (late, late_bridge) = connect_sender::<i64>(waiting, server.address(), 4, WAIT);
    assert_sends_fail(&late, StreamElement::Idle);
    assert!(late_bridge.join().unwrap().is_err());
    // A subtask of the released attempt fails only in consequence of the restart.
    let refused = server.receiver(waiting, TypedStream::<i64>::arc().as_ref(), 4).err();
    assert!(refused.as_ref().is_some_and(Error::is_consequence), "{refused:?}");
    let next = key(job, 1, 0);
    round_trip(&server, next, false, vec![StreamElement::Records(vec![5i64]), StreamElement::EndOfStream]);
}

#[test]
fn releasing_older_attempts_keeps_the_current_one() {
    let server = start_server();
    let job = JobId::generate();
    let old = claim::<i64>(&server, key(job, 0, 0), 2);
    let current = claim::<i64>(&server, key(job, 1, 0), 2);
    server.release_attempts_before(job, 1);
    assert_eq!(old.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
    let (tx, bridge) = connect_sender::<i64>(key(job, 1, 0), server.address(), 2, WAIT);
    tx.send(StreamElement::EndOfStream).unwrap();
    assert_eq!(current.recv_timeout(WAIT), Ok(StreamElement::EndOfStream));
    bridge.join().unwrap().unwrap();
}

#[test]
fn an_undecodable_frame_disconnects_both_ends() {
    let server = start_server();
    let k = key(JobId::generate(), 0, 0);
    // The consumer expects pairs; the producer sends bare strings.
    let rx = claim::<(String, i64)>(&server, k, 4);
    let (tx, bridge) = connect_sender::<String>(k, server.address(), 4, WAIT);
    tx.send(StreamElement::Records(vec!["x".to_string()])).unwrap();
    assert_eq!(rx.recv_timeout(WAIT), Err(RecvTimeoutError::Disconnected));
    assert_sends_fail(&tx, StreamElement::Idle);
    assert!(bridge.join().unwrap().is_err());
}

#[test]
fn a_stray_connection_is_rejected() {
    let server = start_server();
    let mut stray = TcpStream::connect(server.address()).unwrap();
    stray.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    stray.set_read_timeout(Some(WAIT)).unwrap();
    let mut byte = [0u8; 1];
    match stray.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {}
        other => panic!("the stray connection stayed open: {other:?}"),
    }
    assert!(server.shared.lock().pending.is_empty());
}

#[test]
fn connecting_to_nobody_fails_after_the_timeout() {
    let addr = SocketAddr::from(([127, 0, 0, 1], sluice_test_support::free_port().unwrap()));
    let k = key(JobId::generate(), 3, 2);
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let (tx, bridge) = connect_sender::<String>(k, addr, 4, timeout);
    let err = bridge.join().unwrap().unwrap_err();
    assert!(started.elapsed() >= timeout, "gave up after {:?}", started.elapsed());
    assert!(matches!(err, Error::Network(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()) && message.contains(&k.to_string()), "{message}");
    assert!(tx.send(StreamElement::EndOfStream).is_err());
}

#[test]
fn a_producer_without_the_job_secret_is_refused() {
    let server = start_server();
    let k = key(JobId::generate(), 0, 0);
    let rx = claim::<i64>(&server, k, 4);
    let intruder = Arc::new(DataAuth { security: Security::plaintext(), secret: JobSecret::generate().unwrap() });
    let (tx, bridge) = connect_sender_with::<i64>(k, server.address(), 4, WAIT, intruder);
    let _ = tx.send(StreamElement::Records(vec![666]));
    assert!(bridge.join().unwrap().is_err(), "the intruder's bridge kept its connection");
    assert!(server.shared.lock().active.is_empty());
    // The channel is still the real producer's.
    round_trip_claimed(&server, k, rx);
}

/// Sends a few elements on `key`, whose receiver `rx` is already claimed.
fn round_trip_claimed(server: &DataServer, key: ChannelKey, rx: Receiver<StreamElement<i64>>) {
    let (tx, bridge) = connect_sender::<i64>(key, server.address(), 4, WAIT);
    tx.send(StreamElement::Records(vec![1, 2])).unwrap();
    tx.send(StreamElement::EndOfStream).unwrap();
    assert_eq!(rx.recv_timeout(WAIT), Ok(StreamElement::Records(vec![1, 2])));
    assert_eq!(rx.recv_timeout(WAIT), Ok(StreamElement::EndOfStream));
    bridge.join().unwrap().unwrap();
}

#[test]
fn channels_run_over_mutual_tls_and_refuse_peers_without_a_cluster_certificate() {
    let certs = tempfile::tempdir().unwrap();
    crate::transport::tests::make_certs(certs.path(), &["a", "b"]);
    let other = tempfile::tempdir().unwrap();
    crate::transport::tests::make_certs(other.path(), &["x"]);
    let secret = JobSecret::generate().unwrap();
    let auth = |security: Security| Arc::new(DataAuth { security, secret: secret.clone() });
    let server =
        DataServer::start("127.0.0.1:0", crate::transport::tests::tls(certs.path(), "a"), secret.clone()).unwrap();
    let job = JobId::generate();

    // A peer with the job's secret but another CA's certificate, or none.
    for intruder in [crate::transport::tests::tls(other.path(), "x"), Security::plaintext()] {
        let k = key(job, 0, 9);
        let (tx, bridge) = connect_sender_with::<i64>(k, server.address(), 4, WAIT, auth(intruder));
        let _ = tx.send(StreamElement::EndOfStream);
        // What the refused producer makes of the refusal is its business
        // (a TLS alert may even read as credits): the server kept nothing.
        let _ = bridge.join();
        assert!(!parked(&server, k), "the refused connection is parked");
        assert!(server.shared.lock().active.is_empty(), "the refused connection is active");
    }

    // A cluster member: many elements, in order.
    let k = key(job, 0, 0);
    let rx = claim::<i64>(&server, k, 8);
    let (tx, bridge) =
        connect_sender_with::<i64>(k, server.address(), 8, WAIT, auth(crate::transport::tests::tls(certs.path(), "b")));
    let producer = std::thread::spawn(move || {
        for i in 0..2000i64 {
            tx.send(StreamElement::Records((i * 100..i * 100 + 100).collect())).unwrap();
        }
        tx.send(StreamElement::EndOfStream).unwrap();
    });
    let mut next = 0i64;
    loop {
        match rx.recv_timeout(WAIT).unwrap() {
            StreamElement::Records(batch) => {
                for v in batch {
                    assert_eq!(v, next);
                    next += 1;
                }
            }
            StreamElement::EndOfStream => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(next, 200_000);
    producer.join().unwrap();
    bridge.join().unwrap().unwrap();
}

/// Hostile input on the data plane: random bytes as hellos, frames and
/// elements never panic, and a frame announcing more than it carries
/// allocates no more than what arrives.
#[test]
fn random_hellos_and_frames_never_panic() {
    let secret = JobSecret::generate().unwrap();
    let mut seed = 0xda7a_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let valid = hello(&key(JobId::generate(), 0, 0), &secret).unwrap();
    let mut frame = Vec::new();
    for round in 0..20_000u32 {
        let mut bytes: Vec<u8> = if round % 2 == 0 {
            (0..next() % 96).map(|_| next() as u8).collect()
        } else {
            let mut m = valid.clone();
            let i = (next() as usize) % m.len();
            m[i] = next() as u8;
            m
        };
        // As a frame (u32 LE length) with a lying length now and then.
        if round % 5 == 0 && bytes.len() >= 4 {
            bytes[..4].copy_from_slice(&0x1FFF_FFFFu32.to_le_bytes());
        }
        let _ = read_frame(&mut &bytes[..], &mut frame);
        assert!(
            frame.capacity() <= 1 << 16,
            "a frame buffer of {} bytes from {} input bytes",
            frame.capacity(),
            bytes.len()
        );
        let _ = postcard::take_from_bytes::<StreamElement<(String, i64)>>(&bytes);
        let _ = postcard::from_bytes::<ChannelKey>(&bytes);
    }
}
