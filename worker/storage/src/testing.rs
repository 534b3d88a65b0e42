//! Test support (feature `test-support`): real S3-compatible servers started on a free
//! loopback port and killed on drop. Shared by the storage, engine/CLI and operator test suites
//! so they all start them the same way.
//!
//! - [`S3sFs`], `s3s-fs` over a directory: the default. The binary comes from `WEIR_S3S_FS`,
//!   else `${WEIR_CACHE:-$HOME/.cache/weir}/bin/s3s-fs` (`worker/storage/install-s3s-fs.sh`).
//! - [`Moto`], moto's in-memory S3 server: it implements ListMultipartUploads, which s3s-fs
//!   lacks and S3 has (`worker/storage/install-moto.sh`).
//!
//! A missing server fails the test: an S3 path that was never exercised must not pass as green.

use crate::{StaticCredentials, StorageOptions};
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "weir-test-access-key";
/// The secret key the server accepts.
pub const SECRET_KEY: &str = "weir-test-secret-key";

/// `${WEIR_CACHE:-$HOME/.cache/weir}`, where install scripts put the test servers.
fn cache_dir() -> PathBuf {
    std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")))
        .expect("neither WEIR_CACHE nor HOME is set")
}

/// A free loopback port.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("no free loopback port")
        .port()
}

/// Spawns `command` with its output appended to `log`, and waits until it listens on `port`.
fn spawn_listening(name: &str, mut command: Command, port: u16, log: &Path) -> Child {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = child.try_wait().ok().flatten() {
            panic!(
                "{name} exited with {status} during startup:\n{}",
                read_log(log)
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{name} did not listen on 127.0.0.1:{port} within 20 s:\n{}",
                read_log(log)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn read_log(log: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(log) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// Options that reach a test server on `endpoint` with [`ACCESS_KEY`] (path style,
/// `us-east-1`).
fn test_options(endpoint: String) -> StorageOptions {
    StorageOptions {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        path_style: true,
        credentials: Some(StaticCredentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
        }),
        ..StorageOptions::default()
    }
}

/// Where the `s3s-fs` binary is; panics with the install command when it is missing.
pub fn s3s_fs_binary() -> PathBuf {
    let path = match std::env::var_os("WEIR_S3S_FS") {
        Some(path) => PathBuf::from(path),
        None => cache_dir().join("bin/s3s-fs"),
    };
    assert!(
        path.is_file(),
        "s3s-fs not found at {}: run `bash worker/storage/install-s3s-fs.sh` (or set WEIR_S3S_FS \
         to the binary); the S3 integration tests need a real server and do not skip",
        path.display()
    );
    path
}

/// A running s3s-fs process; killed on drop.
#[derive(Debug)]
pub struct S3sFs {
    child: Option<Child>,
    port: u16,
    root: PathBuf,
    log: PathBuf,
}

impl S3sFs {
    /// Starts s3s-fs over `dir/data` with one directory (= bucket) per name in `buckets`.
    pub fn start(dir: &Path, buckets: &[&str]) -> S3sFs {
        let root = dir.join("data");
        for bucket in buckets {
            std::fs::create_dir_all(root.join(bucket)).expect("cannot create the bucket directory");
        }
        let port = free_port();
        let mut server = S3sFs {
            child: None,
            port,
            root,
            log: dir.join("s3s-fs.log"),
        };
        server.restart();
        server
    }

    /// Starts the process (again) on the same port and directory.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let mut command = Command::new(s3s_fs_binary());
        command
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            // s3s logs each request's operation at debug level; tests count them.
            .env("RUST_LOG", "info,s3s::ops=debug");
        self.child = Some(spawn_listening("s3s-fs", command, self.port, &self.log));
    }

    /// Kills the process (the data directory stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The directory served; bucket `b`'s object `k` is the file `root/b/k`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Options that reach this server with its credentials (path style, `us-east-1`).
    pub fn options(&self) -> StorageOptions {
        test_options(self.endpoint())
    }

    /// How many requests of S3 operation `op` (e.g. `UploadPart`) the server has handled.
    pub fn requests(&self, op: &str) -> usize {
        let needle = format!("resolved route, op: {op},");
        self.log_text().matches(&needle).count()
    }

    /// The multipart uploads the server itself holds open (neither completed nor aborted),
    /// whatever a client's bookkeeping says: s3s-fs keeps one `.upload-<id>.json` file per
    /// upload in its root.
    pub fn open_uploads(&self) -> Vec<String> {
        let mut uploads: Vec<String> = std::fs::read_dir(&self.root)
            .expect("the server's directory")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(".upload-"))
            .collect();
        uploads.sort();
        uploads
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }
}

/// A running moto S3 server (in memory: its data dies with it); killed on drop. Any access
/// key is accepted; [`Moto::options`] uses [`ACCESS_KEY`], as [`S3sFs::options`] does.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Moto {
    /// Starts moto's server with one bucket per name in `buckets`; its log goes to
    /// `dir/moto.log`.
    pub fn start(dir: &Path, buckets: &[&str]) -> Moto {
        let server = cache_dir().join("moto-5.2.6/bin/moto_server");
        assert!(
            server.is_file(),
            "moto not found at {}: run `bash worker/storage/install-moto.sh`; the S3 \
             integration tests need a real server and do not skip",
            server.display()
        );
        let port = free_port();
        let log = dir.join("moto.log");
        let mut command = Command::new(server);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
        let moto = Moto {
            child: spawn_listening("moto_server", command, port, &log),
            port,
            log,
        };
        for bucket in buckets {
            let (status, body) = moto.request("PUT", &format!("/{bucket}"));
            assert_eq!(status, 200, "creating bucket {bucket}: {body}");
        }
        moto
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Options that reach this server (path style, `us-east-1`).
    pub fn options(&self) -> StorageOptions {
        test_options(self.endpoint())
    }

    /// Starts a multipart upload of `key` in `bucket` directly, as a writer does that dies
    /// before recording it anywhere; returns the upload id.
    pub fn create_unrecorded_upload(&self, bucket: &str, key: &str) -> String {
        let (status, body) = self.request("POST", &format!("/{bucket}/{key}?uploads"));
        assert_eq!(status, 200, "CreateMultipartUpload {key}: {body}");
        xml_values(&body, "UploadId")
            .pop()
            .unwrap_or_else(|| panic!("no upload id in {body}"))
    }

    /// The keys of the multipart uploads the server holds open in `bucket` (neither completed
    /// nor aborted), whatever a client's bookkeeping says; sorted.
    pub fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{bucket}?uploads"));
        assert_eq!(status, 200, "ListMultipartUploads: {body}");
        let mut keys = xml_values(&body, "Key");
        keys.sort();
        keys
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    /// One unsigned HTTP/1.0 request (moto does not check signatures): status and body.
    fn request(&self, method: &str, target: &str) -> (u16, String) {
        use std::io::Write;
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("moto's port");
        write!(
            stream,
            "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )
        .expect("request to moto");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("response from moto");
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_owned();
        (status, body)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of every `<tag>…</tag>` element in `xml`, in order.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.to_owned()))
        .collect()
}

/// Marks the child process [`in_child_with_credentials`] starts.
const CHILD: &str = "WEIR_TEST_S3_CHILD";

/// Whether this process should run the S3 test `test`'s body. In the test process, no: it
/// runs `test` again in a child process of the same test binary with the server's
/// credentials in the standard AWS environment variables, where a job's credential chain
/// looks (and instance metadata turned off), and asserts that it passed. Setting them in the
/// test process would race with the threads of tests running in parallel, which read the
/// environment.
pub fn in_child_with_credentials(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let o = Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/weir-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/weir-test/credentials",
        )
        .output()
        .expect("cannot run the test binary again");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} in a child process with S3 credentials ({}):\n{stdout}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    false
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        self.stop();
    }
}
