//! The RPC endpoint: one thread per connection reads the frames of a
//! TaskManager or a job driver and hands them to the event loop as
//! [`Event`]s; the loop applies them to the [`Cluster`] (the `on_*`
//! methods here). A connection thread waits for the loop's answer only
//! for the hello, so that no frame is applied before its sender is known.

use super::cluster::TaskManagerEntry;
use super::{loop_gone, Cluster, Event};
use crossbeam_channel::Sender;
use sluice::cluster::remote::messages::{
    ArtifactFrame, ArtifactRequest, DriverHello, FromDriver, FromTaskManagerProcess, Hello, TaskManagerHello,
    ToTaskManagerProcess, ARTIFACT_CHUNK,
};
use sluice::cluster::remote::wire::{self, Link};
use sluice::error::{Error, Result, RpcError};
use sluice::ids::JobId;
use sluice::transport::{
    Admission, SecureStream, Security, SecurityError, CONNECTION_THREAD_STACK, HELLO_TIMEOUT, MAX_CONNECTIONS,
};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::time::Instant;

/// The most slots one TaskManager may offer (a larger offer is refused).
pub const MAX_SLOTS_PER_TASKMANAGER: u32 = 4096;

/// Accepts connections until the process ends, one thread each (at most
/// [`MAX_CONNECTIONS`] at once), secured as `security` says.
pub(super) fn accept(listener: TcpListener, events: Sender<Event>, security: Security) {
    let admission = Admission::new(MAX_CONNECTIONS);
    for conn in listener.incoming() {
        let Ok(socket) = conn else { continue };
        let Some(admitted) = admission.try_admit() else { continue };
        let (events, security) = (events.clone(), security.clone());
        let _ = std::thread::Builder::new().name("rpc".into()).stack_size(CONNECTION_THREAD_STACK).spawn(move || {
            let _admitted = admitted;
            let served = security
                .accept(socket)
                .map_err(|e| Error::io("the secure handshake of an RPC connection failed", e))
                .and_then(|stream| serve_connection(stream, &events));
            if let Err(e) = served {
                tracing::warn!("RPC connection: {e}");
            }
        });
    }
}

fn serve_connection(stream: SecureStream, events: &Sender<Event>) -> Result<()> {
    stream.set_read_timeout(Some(HELLO_TIMEOUT)).map_err(|e| Error::io("RPC connection", e))?;
    let (link, mut reader) = Link::new(stream)?;
    let hello = wire::read_frame::<Hello>(&mut reader)?;
    reader.set_read_timeout(None).map_err(|e| Error::io("RPC connection", e))?;
    match hello {
        Some(Hello::TaskManager(hello)) => {
            if hello.slots > MAX_SLOTS_PER_TASKMANAGER {
                let reason = format!(
                    "{} slots is more than one TaskManager may offer ({MAX_SLOTS_PER_TASKMANAGER}); lower \
                     taskmanager.numberOfTaskSlots",
                    hello.slots
                );
                let _ = link.send(&ToTaskManagerProcess::Refused(reason.clone()));
                return Err(RpcError::Protocol { peer: link.peer().to_string(), what: reason }.into());
            }
            serve_task_manager(link, reader, events, hello)
        }
        Some(Hello::Driver(hello)) => {
            let job = hello.job;
            let (reply, accepted) = crossbeam_channel::bounded(1);
            events.send(Event::DriverHello { hello, link: link.clone(), reply }).map_err(|_| loop_gone())?;
            if let Err(refused) = accepted.recv().map_err(|_| loop_gone())? {
                link.close();
                return Err(refused);
            }
            serve_driver(reader, events, job)
        }
        Some(Hello::FetchArtifact(request)) => serve_artifact(link, events, request),
        None => Ok(()),
    }
}

/// Streams a job's binary to a TaskManager that proved the job's secret,
/// from the file, in chunks (never the whole binary in memory or in a frame).
fn serve_artifact(link: Link, events: &Sender<Event>, request: ArtifactRequest) -> Result<()> {
    let (reply, found) = crossbeam_channel::bounded(1);
    let ArtifactRequest { job, secret, sha256 } = request;
    events
        .send(Event::Call(Box::new(move |c: &mut Cluster| {
            let _ = reply.send(c.artifact_for(job, &secret, &sha256));
        })))
        .map_err(|_| loop_gone())?;
    let path = match found.recv().map_err(|_| loop_gone())? {
        Ok(path) => path,
        Err(why) => {
            let _ = link.send(&ArtifactFrame::Refused(why.clone()));
            link.close();
            return Err(RpcError::Protocol { peer: link.peer().to_string(), what: why }.into());
        }
    };
    let mut file = std::fs::File::open(&path).map_err(|e| Error::io(format!("cannot open '{}'", path.display()), e))?;
    let mut chunk = vec![0u8; ARTIFACT_CHUNK];
    loop {
        let n = std::io::Read::read(&mut file, &mut chunk)
            .map_err(|e| Error::io(format!("cannot read '{}'", path.display()), e))?;
        if n == 0 {
            break;
        }
        link.send(&ArtifactFrame::Chunk(chunk[..n].to_vec()))?;
    }
    link.send(&ArtifactFrame::End)?;
    link.close();
    Ok(())
}

fn serve_task_manager(
    link: Link,
    mut reader: SecureStream,
    events: &Sender<Event>,
    hello: TaskManagerHello,
) -> Result<()> {
    let id = hello.id.0.clone();
    let (reply, registered) = crossbeam_channel::bounded(1);
    events.send(Event::TaskManagerHello { hello, link, reply }).map_err(|_| loop_gone())?;
    let Some(generation) = registered.recv().map_err(|_| loop_gone())? else { return Ok(()) };
    // A TaskManager declared lost has its link closed, which ends this read.
    while let Ok(Some(msg)) = wire::read_frame::<FromTaskManagerProcess>(&mut reader) {
        events.send(Event::TaskManager { id: id.clone(), generation, msg }).map_err(|_| loop_gone())?;
    }
    events.send(Event::TaskManagerClosed { id, generation }).map_err(|_| loop_gone())
}

fn serve_driver(mut reader: SecureStream, events: &Sender<Event>, job: JobId) -> Result<()> {
    while let Ok(Some(msg)) = wire::read_frame::<FromDriver>(&mut reader) {
        events.send(Event::Driver { job, msg }).map_err(|_| loop_gone())?;
    }
    Ok(())
}

/// A reported `/metrics` address, kept only if it is on the host the report
/// came from (`peer`): Prometheus discovery, which sends its token along,
/// must list no other host. An unspecified IP (`0.0.0.0`) becomes the peer's.
fn metrics_on_peer(reported: Option<String>, peer: &str) -> Option<String> {
    let reported = reported?;
    let (Ok(mut addr), Ok(peer_addr)) = (reported.parse::<SocketAddr>(), peer.parse::<SocketAddr>()) else {
        tracing::warn!("dropped the metrics address '{reported}' reported from {peer}: not an IP address and port");
        return None;
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(peer_addr.ip());
    }
    if addr.ip() != peer_addr.ip() {
        tracing::warn!("dropped the metrics address {reported} reported from {peer}: another host");
        return None;
    }
    Some(addr.to_string())
}

impl Cluster {
    /// A TaskManager registers: its generation, or `None` if its id is taken
    /// (it is told so).
    pub(super) fn on_task_manager_hello(&mut self, hello: TaskManagerHello, link: Link) -> Option<u64> {
        let TaskManagerHello { id, slots, metrics_address } = hello;
        let id = id.0;
        let metrics_address = metrics_on_peer(metrics_address, link.peer());
        if self.task_managers.contains_key(&id) {
            let _ = link.send(&ToTaskManagerProcess::Refused(format!("a TaskManager with id '{id}' is registered")));
            return None;
        }
        let generation = self.next_id;
        self.next_id += 1;
        if let Err(e) = link.send(&ToTaskManagerProcess::Registered) {
            tracing::warn!("cannot confirm the registration of TaskManager {id}: {e}");
            return None;
        }
        let entry = TaskManagerEntry {
            link,
            generation,
            slots,
            last_heartbeat: Instant::now(),
            metrics_address,
            processes: BTreeMap::new(),
        };
        self.task_managers.insert(id.clone(), entry);
        eprintln!("TaskManager {id} registered with {slots} slots");
        Some(generation)
    }

    /// A frame from a TaskManager's connection of `generation` (frames of a
    /// connection that was replaced or declared lost are ignored).
    pub(super) fn on_task_manager(&mut self, id: &str, generation: u64, msg: FromTaskManagerProcess) {
        let Some(tm) = self.task_managers.get_mut(id).filter(|t| t.generation == generation) else { return };
        tm.last_heartbeat = Instant::now();
        match msg {
            FromTaskManagerProcess::JobProcessExited { job, seq, status } => {
                if tm.processes.remove(&(job, seq)).is_some() {
                    eprintln!("process {seq} of job {job} on TaskManager {id} ended: {status}");
                }
            }
            FromTaskManagerProcess::JobProcessStarted(report) => {
                let address = metrics_on_peer(report.metrics_address, tm.link.peer());
                if let Some(p) = tm.processes.get_mut(&(report.job, report.seq)) {
                    p.metrics_address = address;
                }
            }
            FromTaskManagerProcess::Heartbeat => {}
            FromTaskManagerProcess::Logs { request, answer } => {
                if let Some(tx) = self.log_requests.remove(&request) {
                    let _ = tx.send(answer);
                }
            }
        }
    }

    /// A TaskManager's connection of `generation` ended: its slots are gone.
    pub(super) fn on_task_manager_closed(&mut self, id: &str, generation: u64) {
        if self.task_managers.get(id).is_some_and(|t| t.generation == generation) {
            self.task_managers.remove(id);
            eprintln!("TaskManager {id} disconnected: its slots are gone");
        }
    }

    /// A job's driver announces its job. Refused unless this JobManager
    /// started the job, the hello carries the job's secret, and the job has
    /// no driver yet and has not ended.
    pub(super) fn on_driver_hello(&mut self, hello: DriverHello, link: Link) -> Result<()> {
        let DriverHello { job, name, required_slots, driver_address, vertices, metrics_address, secret } = hello;
        let peer = link.peer().to_string();
        let Some(entry) = self.jobs.get_mut(&job) else {
            return Err(RpcError::Protocol {
                peer,
                what: format!("announced job {job}, which this JobManager did not start"),
            }
            .into());
        };
        if !entry.secret.matches(&secret) {
            return Err(SecurityError::WrongJobSecret { peer, job: job.to_string() }.into());
        }
        if entry.driver.is_some() || entry.status.is_terminal() {
            return Err(RpcError::Protocol {
                peer,
                what: format!("announced job {job}, whose driver is already connected or which has ended"),
            }
            .into());
        }
        entry.name = name;
        entry.required_slots = required_slots;
        entry.driver_address = Some(driver_address);
        entry.driver_metrics = metrics_on_peer(metrics_address, &peer);
        entry.vertices = vertices;
        entry.driver = Some(link);
        entry.waiting_since = Some(Instant::now());
        Ok(())
    }

    /// A frame from a job's driver.
    pub(super) fn on_driver(&mut self, job: JobId, msg: FromDriver) {
        match msg {
            FromDriver::JobStatus(details) => {
                if let Some(j) = self.jobs.get_mut(&job).filter(|j| !j.status.is_terminal()) {
                    j.status = details.status;
                    j.details = Some(*details);
                }
            }
            FromDriver::JobEnded { status, failure, restarts } => {
                if let Some(j) = self.jobs.get_mut(&job) {
                    if let Some(d) = j.details.as_mut() {
                        d.restarts = restarts;
                        d.status = status;
                    }
                }
                self.end_job(job, status, failure.map(|f| f.to_string()));
            }
            FromDriver::SavepointDone { request, result } => {
                if let Some(tx) = self.savepoints.remove(&request) {
                    let _ = tx.send(result);
                }
            }
            FromDriver::Fence { request, op } => self.on_fence(job, request, op),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::metrics_on_peer;

    #[test]
    fn metrics_addresses_stay_on_the_reporting_host() {
        let peer = "10.0.0.7:40000";
        assert_eq!(metrics_on_peer(Some("10.0.0.7:9250".into()), peer).as_deref(), Some("10.0.0.7:9250"));
        assert_eq!(metrics_on_peer(Some("0.0.0.0:9250".into()), peer).as_deref(), Some("10.0.0.7:9250"));
        assert_eq!(metrics_on_peer(Some("169.254.169.254:80".into()), peer), None);
        assert_eq!(metrics_on_peer(Some("evil.example:80".into()), peer), None);
        assert_eq!(metrics_on_peer(None, peer), None);
    }
}
