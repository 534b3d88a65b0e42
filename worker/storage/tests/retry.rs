//! The S3 store's retry policy against a scripted loopback HTTP server: transient answers
//! (503 SlowDown, a server that never answers) are retried within the configured bounds,
//! permanent ones (403) are not, and the final error says what happened where.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use weir_storage::{Bytes, ObjectStore, RetryPolicy, StorageOptions, open};

/// What the fake server does with one request.
#[derive(Clone, Copy)]
enum Reply {
    Ok,
    SlowDown,
    AccessDenied,
    /// Reads the request and never answers.
    Hang,
    /// Answers 200 with a 1000-byte body, sends 10 bytes of it and then nothing, keeping the
    /// connection open (a server that stalled mid-response).
    StallMidBody,
}

/// A loopback HTTP server answering requests from a script (the last entry repeats).
struct FakeS3 {
    port: u16,
    requests: Arc<AtomicUsize>,
}

impl FakeS3 {
    fn start(script: &[Reply]) -> FakeS3 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let script = Arc::new(Mutex::new(script.to_vec()));
        let counter = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (script, counter) = (Arc::clone(&script), Arc::clone(&counter));
                std::thread::spawn(move || serve(stream, &script, &counter));
            }
        });
        FakeS3 { port, requests }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(stream: TcpStream, script: &Mutex<Vec<Reply>>, counter: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut content_length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return; // client closed
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        counter.fetch_add(1, Ordering::SeqCst);
        let reply = {
            let mut script = script.lock().unwrap();
            if script.len() > 1 {
                script.remove(0)
            } else {
                script[0]
            }
        };
        let response = match reply {
            Reply::Ok => {
                "HTTP/1.1 200 OK\r\nETag: \"etag\"\r\nContent-Length: 0\r\n\r\n".to_owned()
            }
            Reply::SlowDown => error(503, "SlowDown", "Please reduce your request rate."),
            Reply::AccessDenied => error(403, "AccessDenied", "Access Denied"),
            Reply::Hang => {
                std::thread::sleep(Duration::from_secs(10));
                return;
            }
            Reply::StallMidBody => {
                let head = "HTTP/1.1 200 OK\r\nETag: \"etag\"\r\nContent-Length: 1000\r\n\r\n";
                let _ = writer.write_all(format!("{head}0123456789").as_bytes());
                let _ = writer.flush();
                std::thread::sleep(Duration::from_secs(10));
                return;
            }
        };
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn error(status: u16, code: &str, message: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status} Error\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn store(server: &FakeS3, attempt_timeout: Duration) -> Arc<dyn ObjectStore> {
    static ONCE: Once = Once::new();
    #[allow(unsafe_code)]
    ONCE.call_once(|| {
        // SAFETY: every test calls this before starting any client, and `Once` makes the
        // others wait, so nothing reads the environment while it is written.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        }
    });
    let options = StorageOptions {
        endpoint: Some(format!("http://127.0.0.1:{}", server.port)),
        region: Some("us-east-1".into()),
        path_style: true,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            budget: Duration::from_secs(5),
        },
        attempt_timeout,
        ..StorageOptions::default()
    };
    open("s3://bucket/prefix", &options).unwrap()
}

#[test]
fn throttling_is_retried_until_the_server_accepts() {
    let server = FakeS3::start(&[Reply::SlowDown, Reply::SlowDown, Reply::Ok]);
    let store = store(&server, Duration::from_secs(5));
    store
        .put("job/chk-1/_metadata", Bytes::from_static(b"m"))
        .unwrap();
    assert_eq!(server.requests(), 3);
}

#[test]
fn persistent_throttling_fails_after_the_configured_attempts_naming_the_cause() {
    let server = FakeS3::start(&[Reply::SlowDown]);
    let store = store(&server, Duration::from_secs(5));
    let err = store
        .put("job/chk-1/_metadata", Bytes::from_static(b"m"))
        .unwrap_err();
    assert_eq!(server.requests(), 3);
    let message = err.to_string();
    assert!(message.contains("after 3 attempt(s)"), "{message}");
    assert!(
        message.contains("HTTP 503 SlowDown: Please reduce your request rate."),
        "{message}"
    );
    assert!(
        message.contains("s3://bucket/prefix/job/chk-1/_metadata"),
        "{message}"
    );
}

#[test]
fn access_denied_is_not_retried() {
    let server = FakeS3::start(&[Reply::AccessDenied]);
    let store = store(&server, Duration::from_secs(5));
    let err = store
        .put("job/chk-1/_metadata", Bytes::from_static(b"m"))
        .unwrap_err();
    assert_eq!(server.requests(), 1);
    assert!(err.to_string().contains("after 1 attempt(s)"), "{err}");
    assert!(err.to_string().contains("HTTP 403 AccessDenied"), "{err}");
}

/// The SDK's own attempt timeout ends when the response's head arrives; a body that stops
/// arriving must not hold a reader (a restore, the checkpoint coordinator) forever. Found by
/// the soak (`bench/soak.sh`): a GetObject waited on a restarted server for good. A scripted
/// server stands in for S3 here because a real one cannot be made to stall on cue.
#[test]
fn a_body_that_stops_arriving_fails_the_read_within_the_attempt_timeouts() {
    let server = FakeS3::start(&[Reply::StallMidBody]);
    let store = store(&server, Duration::from_millis(300));
    let started = Instant::now();
    let err = store.get("job/chk-1/_metadata").unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}: {err}");
    assert_eq!(
        server.requests(),
        3,
        "each stalled attempt is retried: {err}"
    );
    assert!(
        err.to_string().contains("no complete answer within 300ms"),
        "{err}"
    );
}

#[test]
fn a_server_that_never_answers_fails_the_operation_within_the_attempt_timeouts() {
    let server = FakeS3::start(&[Reply::Hang]);
    let store = store(&server, Duration::from_millis(300));
    let started = Instant::now();
    let err = store
        .put("job/chk-1/_metadata", Bytes::from_static(b"m"))
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}: {err}");
    assert_eq!(server.requests(), 3);
    assert!(err.to_string().contains("timed out"), "{err}");
}
