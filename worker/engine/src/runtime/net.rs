//! The network exchange between TaskManagers: one TCP connection per channel that crosses
//! processes, with credit-based flow control.
//!
//! The producing TaskManager connects to the consumer's data port and names the channel
//! (attempt and [`ChannelId`]). The consumer answers with its initial credit: how many events
//! it can buffer. The producer sends an event only while it holds credit; the consumer
//! returns one credit each time it has handed an event to the consuming task's bounded
//! channel. A slow consumer therefore stops its producers after a bounded number of events —
//! the producing task then blocks on its own bounded channel, which is the backpressure the
//! metrics measure — and nothing is buffered without bound on either side. One connection
//! per channel keeps a blocked channel (e.g. one holding back for barrier alignment) from
//! stalling any other.
//!
//! Frames are `u32` length, `u8` kind, payload. Records travel as their edge's
//! [`BatchCodec`] encodes them; barriers, watermarks, idleness and end of input travel in
//! band, in order with the records. Announcements of unaligned checkpoint barriers are sent
//! ahead of queued records, so the consumer can start the checkpoint at once.

use super::graph::{ChannelId, RemoteInput, RemoteOutput};
use super::{BatchCodec, Event};
use crate::checkpoint::{Barrier, SnapshotKind};
use crate::error::{Error, Result};
use crossbeam_channel::{RecvTimeoutError, SendTimeoutError};
use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const DATA: u8 = 0;
const WATERMARK: u8 = 1;
const IDLE: u8 = 2;
const BARRIER: u8 = 3;
const END: u8 = 4;
const ANNOUNCE: u8 = 5;
const HELLO: u8 = 6;

/// Largest frame accepted (a corrupt length must not allocate gigabytes).
const MAX_FRAME: usize = 256 << 20;
/// How often a pump re-checks cancellation and announcements.
const POLL: Duration = Duration::from_millis(5);
/// How long a producer keeps trying to reach a consumer that is not ready yet.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Called when a channel breaks before its end of input: the attempt must fail.
pub(crate) type OnBroken = Arc<dyn Fn(String) + Send + Sync>;

pub(crate) fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&((payload.len() + 1) as u32).to_le_bytes())?;
    w.write_all(&[kind])?;
    w.write_all(payload)
}

pub(crate) fn read_frame(r: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    let kind = buf[0];
    buf.remove(0);
    Ok((kind, buf))
}

fn encode(ev: &Event, codec: &BatchCodec) -> Result<(u8, Vec<u8>)> {
    Ok(match ev {
        Event::Data(b) => (DATA, (codec.encode)(&**b)?),
        Event::Watermark(w) => (WATERMARK, w.to_le_bytes().to_vec()),
        Event::Idle(i) => (IDLE, vec![u8::from(*i)]),
        Event::Barrier(b) => {
            let mut payload = b.id.to_le_bytes().to_vec();
            payload.push(match b.kind {
                SnapshotKind::Checkpoint => 0,
                SnapshotKind::Savepoint => 1,
                SnapshotKind::StopWithSavepoint { drain: false } => 2,
                SnapshotKind::StopWithSavepoint { drain: true } => 3,
            });
            (BARRIER, payload)
        }
        Event::End => (END, Vec::new()),
    })
}

fn u64_of(p: &[u8]) -> Result<u64> {
    p.try_into()
        .map(u64::from_le_bytes)
        .map_err(|_| Error::User(format!("malformed frame of {} bytes", p.len())))
}

fn decode(kind: u8, payload: &[u8], codec: &BatchCodec) -> Result<Event> {
    Ok(match kind {
        DATA => Event::Data((codec.decode)(payload)?),
        WATERMARK => Event::Watermark(u64_of(payload)? as i64),
        IDLE => Event::Idle(payload.first() == Some(&1)),
        BARRIER => {
            let (id, kind) = match payload {
                [id @ .., kind] if id.len() == 8 => (u64_of(id)?, *kind),
                _ => {
                    return Err(Error::User(format!(
                        "malformed barrier of {} bytes",
                        payload.len()
                    )));
                }
            };
            let kind = match kind {
                0 => SnapshotKind::Checkpoint,
                1 => SnapshotKind::Savepoint,
                2 => SnapshotKind::StopWithSavepoint { drain: false },
                3 => SnapshotKind::StopWithSavepoint { drain: true },
                k => return Err(Error::User(format!("unknown barrier kind {k}"))),
            };
            Event::Barrier(Barrier { id, kind })
        }
        END => Event::End,
        k => return Err(Error::User(format!("unknown frame kind {k}"))),
    })
}

/// Receiving ends waiting for their producer to connect, by attempt and channel.
#[derive(Default)]
struct Registry {
    inputs: Mutex<HashMap<(u64, ChannelId), RemoteInput>>,
    changed: Condvar,
}

/// A TaskManager's data port: accepts producers' connections and feeds the local tasks.
pub(crate) struct DataServer {
    addr: SocketAddr,
    registry: Arc<Registry>,
    capacity: usize,
    attempts: Mutex<HashMap<u64, (Arc<AtomicBool>, OnBroken)>>,
}

impl DataServer {
    /// Binds `host:port` (port 0: any free port) and starts accepting.
    pub(crate) fn start(host: &str, port: u16, capacity: usize) -> Result<Arc<Self>> {
        let listener = TcpListener::bind((host, port))
            .map_err(|e| Error::io("cannot bind the data port", format!("{host}:{port}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read the address of", format!("{host}:{port}"), e))?;
        let server = Arc::new(DataServer {
            addr,
            registry: Arc::default(),
            capacity,
            attempts: Mutex::default(),
        });
        let s = server.clone();
        std::thread::Builder::new()
            .name("data-accept".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let s = s.clone();
                    let _ = std::thread::Builder::new()
                        .name("data-in".into())
                        .spawn(move || s.serve(conn));
                }
            })
            .map_err(|e| Error::io("cannot spawn thread for", "the data port", e))?;
        Ok(server)
    }

    /// The address producers connect to.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes an attempt's receiving ends available to their producers.
    pub(crate) fn register(
        &self,
        attempt: u64,
        inputs: Vec<RemoteInput>,
        cancel: Arc<AtomicBool>,
        on_broken: OnBroken,
    ) {
        self.attempts
            .lock()
            .expect("not poisoned")
            .insert(attempt, (cancel, on_broken));
        let mut m = self.registry.inputs.lock().expect("not poisoned");
        for i in inputs {
            m.insert((attempt, i.id), i);
        }
        self.registry.changed.notify_all();
    }

    /// Forgets an attempt (its tasks ended): receiving ends not claimed are dropped.
    pub(crate) fn unregister(&self, attempt: u64) {
        self.attempts.lock().expect("not poisoned").remove(&attempt);
        self.registry
            .inputs
            .lock()
            .expect("not poisoned")
            .retain(|(a, _), _| *a != attempt);
    }

    fn serve(&self, conn: TcpStream) {
        let _ = conn.set_nodelay(true);
        let mut reader = BufReader::new(match conn.try_clone() {
            Ok(c) => c,
            Err(_) => return,
        });
        let mut writer = conn;
        let Ok((HELLO, hello)) = read_frame(&mut reader) else {
            return;
        };
        let Ok((attempt, id)) = postcard::from_bytes::<(u64, ChannelId)>(&hello) else {
            return;
        };
        // The consumer's TaskManager may deploy a moment after the producer's.
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let input = {
            let mut m = self.registry.inputs.lock().expect("not poisoned");
            loop {
                if let Some(i) = m.remove(&(attempt, id)) {
                    break Some(i);
                }
                if Instant::now() >= deadline {
                    break None;
                }
                m = self
                    .registry
                    .changed
                    .wait_timeout(m, Duration::from_millis(100))
                    .expect("not poisoned")
                    .0;
            }
        };
        let Some(input) = input else {
            let _ = writer.write_all(&0u32.to_le_bytes());
            return;
        };
        let (cancel, on_broken) = match self.attempts.lock().expect("not poisoned").get(&attempt) {
            Some((c, b)) => (c.clone(), b.clone()),
            None => return,
        };
        // As many events as the consuming task's channel buffers.
        let credit = input.tx.capacity().unwrap_or(self.capacity).max(1) as u32;
        if writer.write_all(&credit.to_le_bytes()).is_err() {
            on_broken(format!(
                "channel {id:?}: the producer went away during the handshake"
            ));
            return;
        }
        if let Err(e) = receive(&mut reader, &mut writer, &input, &cancel)
            && !cancel.load(Relaxed)
        {
            on_broken(format!(
                "the connection from the producer of channel {}→{} of node {} broke: {}",
                id.from,
                id.to,
                id.node,
                crate::error::report(&e)
            ));
        }
    }
}

/// Reads events until end of input, handing each to the consuming task and returning a
/// credit for it.
fn receive(
    reader: &mut impl Read,
    writer: &mut TcpStream,
    input: &RemoteInput,
    cancel: &AtomicBool,
) -> Result<()> {
    loop {
        let (kind, payload) =
            read_frame(reader).map_err(|e| Error::io("cannot read from", "the network", e))?;
        if kind == ANNOUNCE {
            input.announced.fetch_max(u64_of(&payload)?, SeqCst);
            continue;
        }
        let ev = decode(kind, &payload, &input.codec)?;
        let end = matches!(ev, Event::End);
        let mut ev = ev;
        loop {
            match input.tx.send_timeout(ev, POLL * 10) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(e)) if !cancel.load(Relaxed) => ev = e,
                // The consuming task is gone (failed or cancelled): stop quietly.
                Err(_) => return Ok(()),
            }
        }
        if end {
            return Ok(());
        }
        writer
            .write_all(&1u32.to_le_bytes())
            .map_err(|e| Error::io("cannot return credit over", "the network", e))?;
    }
}

/// Connects each remote output to its consumer's TaskManager and pumps it there, one thread
/// per channel. `addr_of(subtask)` is the data address of the TaskManager running that
/// consumer subtask.
pub(crate) fn start_outputs(
    attempt: u64,
    outputs: Vec<RemoteOutput>,
    addr_of: &dyn Fn(usize) -> Option<SocketAddr>,
    cancel: Arc<AtomicBool>,
    on_broken: OnBroken,
) -> Result<()> {
    for out in outputs {
        let addr = addr_of(out.id.to as usize).ok_or_else(|| {
            Error::User(format!(
                "no TaskManager runs subtask {} of channel {:?}",
                out.id.to, out.id
            ))
        })?;
        let (cancel, on_broken) = (cancel.clone(), on_broken.clone());
        std::thread::Builder::new()
            .name("data-out".into())
            .spawn(move || {
                if let Err(e) = send(attempt, &out, addr, &cancel)
                    && !cancel.load(Relaxed)
                {
                    on_broken(format!(
                        "channel {}→{} of node {} to {addr}: {}",
                        out.id.from,
                        out.id.to,
                        out.id.node,
                        crate::error::report(&e)
                    ));
                }
            })
            .map_err(|e| Error::io("cannot spawn thread for", "a network channel", e))?;
    }
    Ok(())
}

fn connect(
    attempt: u64,
    out: &RemoteOutput,
    addr: SocketAddr,
    cancel: &AtomicBool,
) -> Result<(TcpStream, u32)> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let hello = postcard::to_allocvec(&(attempt, out.id)).expect("encodes");
    loop {
        let attempt_once = || -> std::io::Result<(TcpStream, u32)> {
            let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
            conn.set_nodelay(true)?;
            write_frame(&mut conn, HELLO, &hello)?;
            let mut credit = [0u8; 4];
            conn.read_exact(&mut credit)?;
            Ok((conn, u32::from_le_bytes(credit)))
        };
        match attempt_once() {
            Ok((conn, credit)) if credit > 0 => return Ok((conn, credit)),
            Ok(_) => {
                return Err(Error::User(format!(
                    "the TaskManager at {addr} does not expect channel {:?}",
                    out.id
                )));
            }
            Err(e) if Instant::now() >= deadline || cancel.load(Relaxed) => {
                return Err(Error::io(
                    "cannot connect to the TaskManager at",
                    addr.to_string(),
                    e,
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Credit granted by the consumer and not used yet.
#[derive(Default)]
struct Credit {
    available: Mutex<(u64, bool)>,
    changed: Condvar,
}

fn send(attempt: u64, out: &RemoteOutput, addr: SocketAddr, cancel: &AtomicBool) -> Result<()> {
    let (conn, initial) = connect(attempt, out, addr, cancel)?;
    let credit = Arc::new(Credit::default());
    credit.available.lock().expect("not poisoned").0 = u64::from(initial);
    let mut credit_reader = conn
        .try_clone()
        .map_err(|e| Error::io("cannot clone connection to", addr.to_string(), e))?;
    let c = credit.clone();
    std::thread::Builder::new()
        .name("data-credit".into())
        .spawn(move || {
            let mut buf = [0u8; 4];
            while credit_reader.read_exact(&mut buf).is_ok() {
                let mut a = c.available.lock().expect("not poisoned");
                a.0 += u64::from(u32::from_le_bytes(buf));
                c.changed.notify_all();
            }
            c.available.lock().expect("not poisoned").1 = true;
            c.changed.notify_all();
        })
        .map_err(|e| Error::io("cannot spawn thread for", "a network channel", e))?;
    let mut w = BufWriter::with_capacity(64 << 10, conn);
    let io = |e| Error::io("cannot send to", addr.to_string(), e);
    let mut announced = 0u64;
    loop {
        if cancel.load(Relaxed) {
            return Ok(());
        }
        let a = out.announce.load(SeqCst);
        if a > announced {
            announced = a;
            write_frame(&mut w, ANNOUNCE, &a.to_le_bytes()).map_err(io)?;
            w.flush().map_err(io)?;
        }
        {
            let mut avail = credit.available.lock().expect("not poisoned");
            if avail.0 == 0 {
                if avail.1 {
                    return Err(Error::User(format!(
                        "the consumer at {addr} closed the channel"
                    )));
                }
                w.flush().map_err(io)?;
                let _ = credit
                    .changed
                    .wait_timeout(avail, POLL)
                    .expect("not poisoned");
                continue;
            }
            avail.0 -= 1;
        }
        let ev = match out.rx.recv_timeout(POLL) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => {
                credit.available.lock().expect("not poisoned").0 += 1;
                w.flush().map_err(io)?;
                continue;
            }
            // The producing task ended without End: it failed; the attempt is being torn down.
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let (kind, payload) = encode(&ev, &out.codec)?;
        write_frame(&mut w, kind, &payload).map_err(io)?;
        if kind == END {
            w.flush().map_err(io)?;
            return Ok(());
        }
        if out.rx.is_empty() {
            w.flush().map_err(io)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A barrier crossing the network keeps what its snapshot is for: a TaskManager must
    /// align a savepoint, stop at a stop-with-savepoint and drain for a draining one.
    #[test]
    fn every_barrier_kind_survives_the_wire_and_a_malformed_one_is_an_error() {
        let codec = BatchCodec::of::<u64>();
        for kind in [
            SnapshotKind::Checkpoint,
            SnapshotKind::Savepoint,
            SnapshotKind::StopWithSavepoint { drain: false },
            SnapshotKind::StopWithSavepoint { drain: true },
        ] {
            let barrier = Barrier { id: 7 << 40, kind };
            let (frame, payload) = encode(&Event::Barrier(barrier), &codec).unwrap();
            match decode(frame, &payload, &codec).unwrap() {
                Event::Barrier(b) => assert_eq!(b, barrier),
                _ => panic!("{kind:?}: not a barrier"),
            }
        }
        let err = decode(BARRIER, &7u64.to_le_bytes(), &codec).err().unwrap();
        assert!(
            err.to_string().contains("malformed barrier of 8 bytes"),
            "{err}"
        );
        let mut unknown = 7u64.to_le_bytes().to_vec();
        unknown.push(9);
        let err = decode(BARRIER, &unknown, &codec).err().unwrap();
        assert!(err.to_string().contains("unknown barrier kind 9"), "{err}");
    }
}
