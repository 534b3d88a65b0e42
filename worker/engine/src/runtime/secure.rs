//! TLS on the JobManager–TaskManager control connection (`security.ssl.internal.*`): the
//! connection layer both ends pass a fresh TCP stream through before anything is said on it.
//! Without TLS the stream is used as is. With TLS the two sides run a mutually authenticated
//! handshake (each presents a certificate signed by the shared CA; the TaskManager also checks
//! the JobManager's name, `jobmanager.rpc.address`), and the rest of the runtime keeps its
//! blocking, split reader/writer use of the connection: two pump threads move bytes between
//! the TLS session and one end of a local socket pair, whose other end the runtime reads and
//! writes like a TCP stream. No lock is held across blocking I/O, so a slow peer in one
//! direction never stalls the other.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The RPC's TLS: this process's certificate and key, and the CA its peers' certificates must
/// chain to, as a server (the JobManager) and as a client (a TaskManager).
#[derive(Debug, Clone)]
pub struct RpcTls {
    /// Presents the certificate and requires a client certificate from the CA.
    pub server: Arc<rustls::ServerConfig>,
    /// Presents the certificate and trusts only the CA.
    pub client: Arc<rustls::ClientConfig>,
}

/// A control connection: plain TCP, or the local end of a TLS session's pump.
#[derive(Debug)]
pub(crate) enum RpcStream {
    Tcp(TcpStream),
    Tls(UnixStream),
}

impl RpcStream {
    pub(crate) fn try_clone(&self) -> std::io::Result<RpcStream> {
        Ok(match self {
            RpcStream::Tcp(s) => RpcStream::Tcp(s.try_clone()?),
            RpcStream::Tls(s) => RpcStream::Tls(s.try_clone()?),
        })
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            RpcStream::Tcp(s) => s.set_read_timeout(t),
            RpcStream::Tls(s) => s.set_read_timeout(t),
        }
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            RpcStream::Tcp(s) => s.set_write_timeout(t),
            RpcStream::Tls(s) => s.set_write_timeout(t),
        }
    }

    pub(crate) fn shutdown(&self) {
        let _ = match self {
            RpcStream::Tcp(s) => s.shutdown(Shutdown::Both),
            RpcStream::Tls(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for RpcStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            RpcStream::Tcp(s) => s.read(buf),
            RpcStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for RpcStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            RpcStream::Tcp(s) => s.write(buf),
            RpcStream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            RpcStream::Tcp(s) => s.flush(),
            RpcStream::Tls(s) => s.flush(),
        }
    }
}

/// The JobManager's end: `tcp` as accepted, through a TLS handshake when `tls` is set. A
/// handshake that fails (no certificate, one from another CA, not TLS at all) is an error
/// saying so; `timeout` bounds it.
pub(crate) fn accept(tcp: TcpStream, tls: Option<&RpcTls>, timeout: Duration) -> Result<RpcStream> {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(RpcStream::Tcp(tcp));
    };
    let conn = rustls::ServerConnection::new(tls.server.clone())
        .map_err(|e| Error::User(format!("cannot start a TLS session: {e}")))?;
    secure(rustls::Connection::Server(conn), tcp, timeout)
}

/// A TaskManager's end: `tcp` to the JobManager at `host` (its certificate must name it),
/// through a TLS handshake when `tls` is set.
pub(crate) fn connect(
    tcp: TcpStream,
    host: &str,
    tls: Option<&RpcTls>,
    timeout: Duration,
) -> Result<RpcStream> {
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(RpcStream::Tcp(tcp));
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|_| {
        Error::Config(format!(
            "'{}' ({host}) cannot be checked against a TLS certificate",
            weir_contract::options::RPC_ADDRESS.key
        ))
    })?;
    let conn = rustls::ClientConnection::new(tls.client.clone(), name)
        .map_err(|e| Error::User(format!("cannot start a TLS session: {e}")))?;
    secure(rustls::Connection::Client(conn), tcp, timeout)
}

fn tls_error(e: impl std::fmt::Display) -> Error {
    Error::User(format!("TLS handshake failed: {e}"))
}

/// Completes the handshake on `tcp`, then pumps the session to and from a socket pair.
fn secure(
    mut conn: rustls::Connection,
    mut tcp: TcpStream,
    timeout: Duration,
) -> Result<RpcStream> {
    tcp.set_read_timeout(Some(timeout)).map_err(tls_error)?;
    tcp.set_write_timeout(Some(timeout)).map_err(tls_error)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(tls_error)?;
    }
    while conn.wants_write() {
        conn.write_tls(&mut tcp).map_err(tls_error)?;
    }
    // Only the handshake is bounded: afterwards a peer may rightly not read for as long as
    // its operators backpressure (a write timeout left in place broke the connection when
    // the receiver stalled for longer than the handshake timeout).
    tcp.set_read_timeout(None).map_err(tls_error)?;
    tcp.set_write_timeout(None).map_err(tls_error)?;
    // The handshake may have read the peer's first message already.
    let mut early = Vec::new();
    let _ = conn.reader().read_to_end(&mut early);
    let (app, mut inner) = UnixStream::pair().map_err(tls_error)?;
    if !early.is_empty() {
        inner.write_all(&early).map_err(tls_error)?;
    }
    let conn = Arc::new(Mutex::new(conn));
    let (tcp_in, inner_out) = (
        tcp.try_clone().map_err(tls_error)?,
        inner.try_clone().map_err(tls_error)?,
    );
    let incoming = conn.clone();
    std::thread::Builder::new()
        .name("rpc-tls-in".into())
        .spawn(move || pump_in(&incoming, tcp_in, inner_out))
        .map_err(tls_error)?;
    std::thread::Builder::new()
        .name("rpc-tls-out".into())
        .spawn(move || pump_out(&conn, tcp, inner))
        .map_err(tls_error)?;
    Ok(RpcStream::Tls(app))
}

/// Peer → runtime: decrypts what arrives on `tcp` and writes it to the local socket; at the
/// end (the peer closed, an error, a bad record) closes both so the runtime sees the
/// connection end.
fn pump_in(conn: &Mutex<rustls::Connection>, mut tcp: TcpStream, mut local: UnixStream) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut plain = Vec::new();
        let mut rest = &buf[..n];
        let mut healthy = true;
        {
            let mut c = conn.lock().expect("not poisoned");
            while !rest.is_empty() && healthy {
                healthy = c.read_tls(&mut rest).is_ok()
                    && match c.process_new_packets() {
                        Ok(_) => true,
                        Err(e) => {
                            tracing::warn!(error = %e, "bad TLS record on the RPC connection");
                            false
                        }
                    };
                // Ends with WouldBlock (no more plaintext yet) or EOF (close_notify); what
                // was read stays in `plain` either way.
                let _ = c.reader().read_to_end(&mut plain);
            }
        }
        if !plain.is_empty() && local.write_all(&plain).is_err() {
            break;
        }
        if !healthy {
            break;
        }
    }
    let _ = local.shutdown(Shutdown::Both);
    let _ = tcp.shutdown(Shutdown::Both);
}

/// Runtime → peer: encrypts what the runtime writes to the local socket and sends it on
/// `tcp`; when the runtime closes its end, says goodbye (close_notify) and closes `tcp`.
fn pump_out(conn: &Mutex<rustls::Connection>, mut tcp: TcpStream, mut local: UnixStream) {
    let mut buf = vec![0u8; 16 * 1024];
    // Encrypts `plain` (in pieces, so rustls's buffer limit is never reached) into records.
    let seal = |plain: &[u8]| -> Option<Vec<u8>> {
        let mut c = conn.lock().expect("not poisoned");
        let mut records = Vec::new();
        for piece in plain.chunks(4096) {
            c.writer().write_all(piece).ok()?;
            while c.wants_write() {
                c.write_tls(&mut records).ok()?;
            }
        }
        Some(records)
    };
    loop {
        let n = match local.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match seal(&buf[..n]) {
            Some(records) if tcp.write_all(&records).is_ok() => {}
            _ => break,
        }
    }
    let goodbye = {
        let mut c = conn.lock().expect("not poisoned");
        c.send_close_notify();
        let mut records = Vec::new();
        while c.wants_write() && c.write_tls(&mut records).is_ok() {}
        records
    };
    let _ = tcp.write_all(&goodbye);
    let _ = tcp.shutdown(Shutdown::Both);
    let _ = local.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use weir_contract::security::testing::TestCertificates;
    use weir_contract::security::tls;

    fn rpc_tls(c: &TestCertificates) -> RpcTls {
        let (server, client) =
            tls::mutual((&c.cert, "cert"), (&c.key, "key"), (&c.ca, "ca")).unwrap();
        RpcTls { server, client }
    }

    /// Accepts one connection with `server` and connects to it with `client` (`None`: plain
    /// TCP); returns both ends, or the accepting side's error.
    fn pair(server: &RpcTls, client: Option<&RpcTls>) -> (Result<RpcStream>, Result<RpcStream>) {
        pair_within(server, client, Duration::from_secs(2))
    }

    /// [`pair`] with `timeout` for the handshakes.
    fn pair_within(
        server: &RpcTls,
        client: Option<&RpcTls>,
        timeout: Duration,
    ) -> (Result<RpcStream>, Result<RpcStream>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = server.clone();
        let accepted = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            accept(tcp, Some(&server), timeout)
        });
        let tcp = TcpStream::connect(addr).unwrap();
        let connected = connect(tcp, "127.0.0.1", client, timeout);
        (accepted.join().unwrap(), connected)
    }

    #[test]
    fn a_receiver_that_stalls_longer_than_the_handshake_timeout_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let tls = rpc_tls(&TestCertificates::generate(dir.path(), &["127.0.0.1"]));
        let (server, client) = pair_within(&tls, Some(&tls), Duration::from_millis(200));
        let (mut server, client) = (server.unwrap(), client.unwrap());
        // More than the socket buffers hold: the sending pump blocks in its TCP write while
        // the receiver (a backpressured operator) reads nothing for 4 handshake timeouts.
        let data: Vec<u8> = (0..16 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut w = client.try_clone().unwrap();
        let sent = data.clone();
        let sender = std::thread::spawn(move || w.write_all(&sent).unwrap());
        std::thread::sleep(Duration::from_millis(800));
        let mut got = vec![0u8; data.len()];
        server.read_exact(&mut got).unwrap();
        assert!(
            got == data,
            "bytes arrive intact and in order after the stall"
        );
        sender.join().unwrap();
    }

    #[test]
    fn megabytes_cross_both_ways_at_once_and_arrive_intact() {
        let dir = tempfile::tempdir().unwrap();
        let tls = rpc_tls(&TestCertificates::generate(dir.path(), &["127.0.0.1"]));
        let (server, client) = pair(&tls, Some(&tls));
        let (server, client) = (server.unwrap(), client.unwrap());
        // Both sides write 4 MiB before reading anything: a pump holding a lock across a
        // blocking write would deadlock here.
        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let mut senders = Vec::new();
        for end in [&server, &client] {
            let (mut w, data) = (end.try_clone().unwrap(), data.clone());
            senders.push(std::thread::spawn(move || w.write_all(&data).unwrap()));
        }
        for mut end in [server, client] {
            let mut got = vec![0u8; data.len()];
            end.read_exact(&mut got).unwrap();
            assert!(got == data, "bytes arrive intact and in order");
            end.shutdown();
        }
        for s in senders {
            s.join().unwrap();
        }
    }

    #[test]
    fn a_peer_without_a_certificate_from_the_ca_or_without_tls_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tls = rpc_tls(&TestCertificates::generate(dir.path(), &["127.0.0.1"]));
        let other_dir = tempfile::tempdir().unwrap();
        let other = rpc_tls(&TestCertificates::generate(
            other_dir.path(),
            &["127.0.0.1"],
        ));
        let (server, client) = pair(&tls, Some(&other));
        let e = server.unwrap_err().to_string();
        assert!(e.contains("TLS handshake failed"), "{e}");
        assert!(
            client.is_err(),
            "the other side does not trust this CA either"
        );
        // Plain TCP: the JobManager's handshake times out waiting for a ClientHello.
        let (server, _plain) = pair(&tls, None);
        let e = server.unwrap_err().to_string();
        assert!(e.contains("TLS handshake failed"), "{e}");
    }
}
