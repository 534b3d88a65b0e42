//! The control protocol between JobManager and TaskManagers: the messages each side sends,
//! the handshake that opens every connection, and one end of a connection.

use super::JobSpec;
use crate::checkpoint::{Barrier, SnapshotKind};
use crate::error::{Error, Result};
use crate::runtime::coordinator::TaskTiming;
use crate::runtime::memory::MemoryBudget;
use crate::runtime::net::{read_frame, write_frame};
use crate::runtime::persist::{PersistTarget, Persisted};
use crate::runtime::secure::RpcStream;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::Duration;
use weir_contract::security::{self, Token};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct OpReport {
    pub(super) records_in: u64,
    pub(super) records_out: u64,
    pub(super) watermark: Timestamp,
    pub(super) state_entries: u64,
    pub(super) skipped: u64,
    pub(super) gauges: Vec<crate::runtime::metrics::Gauge>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TaskReport {
    pub(super) task: u32,
    pub(super) backpressured_ns: u64,
    pub(super) idle_ns: u64,
    pub(super) finished: bool,
    pub(super) operators: Vec<OpReport>,
}

/// TaskManager → JobManager.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ToJm {
    Register {
        slots: u32,
        data_addr: String,
        memory: Option<MemoryBudget>,
    },
    Heartbeat {
        attempt: u64,
        tasks: Vec<TaskReport>,
        rss_bytes: Option<u64>,
    },
    Ack {
        attempt: u64,
        id: u64,
        states: Vec<(String, u32, std::result::Result<Persisted, String>)>,
        /// How the task took it: the JobManager's checkpoint statistics per subtask.
        timing: TaskTiming,
    },
    TaskEnded {
        attempt: u64,
        task: u32,
        error: Option<String>,
    },
    Broken {
        attempt: u64,
        message: String,
    },
}

/// JobManager → TaskManager.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum ToTm {
    Registered {
        tm: u64,
        job: JobSpec,
    },
    Deploy {
        attempt: u64,
        slots: Vec<u32>,
        peers: Vec<(u32, String)>,
        restore: Option<String>,
        /// The latest barrier triggered when the tasks were deployed: sources inject it
        /// first (the JobManager does not send that trigger again).
        checkpoint_base: Barrier,
        /// Where that barrier's snapshot is written, if it is one in flight (a checkpoint
        /// triggered while the tasks were being deployed); without it the TaskManager could
        /// not persist what its sources snapshot for it.
        base_target: Option<PersistTarget>,
    },
    Trigger {
        attempt: u64,
        id: u64,
        target: PersistTarget,
        /// What the snapshot is for; travels with the barrier.
        kind: SnapshotKind,
    },
    Completed {
        attempt: u64,
        id: u64,
    },
    Aborted {
        attempt: u64,
        id: u64,
    },
    Cancel {
        attempt: u64,
    },
    Ping,
}

/// The first frames of every control connection, before [`ToJm::Register`]: the JobManager
/// challenges, the TaskManager answers with its proof and a challenge of its own, and the
/// JobManager accepts with its proof (or refuses, saying why).
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Handshake {
    Challenge {
        nonce: [u8; 32],
    },
    Proof {
        /// HMAC of [`TM_PROOF`] and both challenges; `None` without a secret.
        tag: Option<Vec<u8>>,
        nonce: [u8; 32],
    },
    Accepted {
        /// HMAC of [`JM_PROOF`] and both challenges; `None` without a secret.
        tag: Option<Vec<u8>>,
    },
    Refused {
        reason: String,
    },
}

/// What each side signs, so neither side's proof can be replayed as the other's.
pub(super) const TM_PROOF: &[u8] = b"weir rpc: taskmanager";
pub(super) const JM_PROOF: &[u8] = b"weir rpc: jobmanager";

pub(super) fn proof_message(role: &[u8], jm_nonce: &[u8; 32], tm_nonce: &[u8; 32]) -> Vec<u8> {
    [role, jm_nonce, tm_nonce].concat()
}

/// The key a refusal names, so the log says what to set.
pub(super) fn secret_key() -> &'static str {
    weir_contract::options::INTERNAL_TOKEN_FILE.key
}

/// The JobManager's side of the handshake; `Err` says why the peer was refused (and has
/// been told so).
pub(super) fn accept_handshake(
    conn: &Conn,
    reader: &mut impl std::io::Read,
    token: Option<&Token>,
) -> std::result::Result<(), String> {
    let jm_nonce = security::nonce();
    conn.send(&Handshake::Challenge { nonce: jm_nonce })
        .map_err(|e| crate::error::report(&e))?;
    let Handshake::Proof {
        tag,
        nonce: tm_nonce,
    } = recv::<Handshake>(reader, &conn.peer).map_err(|e| crate::error::report(&e))?
    else {
        return Err("it did not answer the challenge".into());
    };
    let refusal = match (token, &tag) {
        (None, _) => None,
        (Some(_), None) => Some(format!(
            "it presented no RPC secret (set {} on the TaskManager)",
            secret_key()
        )),
        (Some(t), Some(tag)) if !t.verify(&proof_message(TM_PROOF, &jm_nonce, &tm_nonce), tag) => {
            Some(format!(
                "its RPC secret differs from this JobManager's ({})",
                secret_key()
            ))
        }
        (Some(_), Some(_)) => None,
    };
    if let Some(reason) = refusal {
        let _ = conn.send(&Handshake::Refused {
            reason: reason.clone(),
        });
        return Err(reason);
    }
    let tag = token.map(|t| t.sign(&proof_message(JM_PROOF, &jm_nonce, &tm_nonce)));
    conn.send(&Handshake::Accepted { tag })
        .map_err(|e| crate::error::report(&e))
}

/// The TaskManager's side: answers the challenge and checks the JobManager's proof.
pub(super) fn offer_handshake(
    conn: &Conn,
    reader: &mut impl std::io::Read,
    token: Option<&Token>,
) -> Result<()> {
    let peer = &conn.peer;
    let Handshake::Challenge { nonce: jm_nonce } = recv::<Handshake>(reader, peer)? else {
        return Err(Error::User(format!(
            "{peer} did not open the RPC handshake: is it a Weir JobManager?"
        )));
    };
    let tm_nonce = security::nonce();
    let tag = token.map(|t| t.sign(&proof_message(TM_PROOF, &jm_nonce, &tm_nonce)));
    conn.send(&Handshake::Proof {
        tag,
        nonce: tm_nonce,
    })?;
    match recv::<Handshake>(reader, peer)? {
        Handshake::Accepted { tag } => match (token, tag) {
            (None, _) => Ok(()),
            (Some(t), Some(tag))
                if t.verify(&proof_message(JM_PROOF, &jm_nonce, &tm_nonce), &tag) =>
            {
                Ok(())
            }
            (Some(_), _) => Err(Error::User(format!(
                "the JobManager at {peer} did not prove it holds this TaskManager's RPC secret ({}): refusing its commands",
                secret_key()
            ))),
        },
        Handshake::Refused { reason } => Err(Error::User(format!(
            "the JobManager at {peer} refused this TaskManager: {reason}"
        ))),
        other => Err(Error::User(format!(
            "unexpected RPC handshake message from {peer}: {other:?}"
        ))),
    }
}

/// One end of a control connection: sends whole messages, one writer at a time.
pub(super) struct Conn {
    pub(super) stream: Mutex<RpcStream>,
    pub(super) peer: String,
}

/// The address of the far end of `stream`, for messages.
pub(super) fn peer_of(stream: &TcpStream) -> String {
    stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into())
}

impl Conn {
    pub(super) fn new(stream: RpcStream, peer: String) -> Result<Self> {
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| Error::io("cannot configure connection to", peer.clone(), e))?;
        Ok(Conn {
            stream: Mutex::new(stream),
            peer,
        })
    }

    pub(super) fn send<T: Serialize>(&self, msg: &T) -> Result<()> {
        let bytes = postcard::to_allocvec(msg).expect("messages encode");
        let mut s = self.stream.lock().expect("not poisoned");
        write_frame(&mut *s, 0, &bytes)
            .map_err(|e| Error::io("cannot send to", self.peer.clone(), e))
    }

    pub(super) fn close(&self) {
        self.stream.lock().expect("not poisoned").shutdown();
    }
}

pub(super) fn recv<T: for<'de> Deserialize<'de>>(
    r: &mut impl std::io::Read,
    peer: &str,
) -> Result<T> {
    let (_, bytes) = read_frame(r).map_err(|e| Error::io("connection lost to", peer, e))?;
    postcard::from_bytes(&bytes)
        .map_err(|e| Error::User(format!("malformed message from {peer}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;
    use std::net::TcpListener;

    /// Runs the handshake over loopback TCP with the JobManager holding `jm` and the
    /// TaskManager `tm`; returns the JobManager's refusal and the TaskManager's error.
    fn handshake(jm: Option<&str>, tm: Option<&str>) -> (Option<String>, Option<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let jm = jm.and_then(Token::new);
        let jm_side = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let stream = RpcStream::Tcp(tcp);
            let conn = Conn::new(stream.try_clone().unwrap(), "tm".into()).unwrap();
            let mut reader = BufReader::new(stream);
            accept_handshake(&conn, &mut reader, jm.as_ref()).err()
        });
        let stream = RpcStream::Tcp(TcpStream::connect(addr).unwrap());
        let conn = Conn::new(stream.try_clone().unwrap(), "jm".into()).unwrap();
        let mut reader = BufReader::new(stream);
        let tm_error = offer_handshake(&conn, &mut reader, tm.and_then(Token::new).as_ref())
            .err()
            .map(|e| e.to_string());
        (jm_side.join().unwrap(), tm_error)
    }

    #[test]
    fn the_rpc_handshake_passes_only_when_both_sides_hold_the_same_secret() {
        assert_eq!(handshake(Some("s"), Some("s")), (None, None));
        assert_eq!(handshake(None, None), (None, None));
        let (jm, tm) = handshake(Some("s"), Some("other"));
        assert!(jm.unwrap().contains("its RPC secret differs"));
        assert!(tm.unwrap().contains("refused this TaskManager"));
        let (jm, tm) = handshake(Some("s"), None);
        assert!(jm.unwrap().contains("presented no RPC secret"));
        assert!(tm.unwrap().contains("refused this TaskManager"));
        // A JobManager without the secret cannot command a TaskManager that holds it.
        let (jm, tm) = handshake(None, Some("s"));
        assert_eq!(jm, None);
        assert!(
            tm.as_deref()
                .unwrap()
                .contains("did not prove it holds this TaskManager's RPC secret"),
            "{tm:?}"
        );
    }
}
