//! Test support (feature `test-support`): a real S3-compatible server, `s3s-fs`, started on a
//! free loopback port over a directory and killed on drop. Shared by the storage, engine/CLI
//! and operator test suites so they all start it the same way.
//!
//! The binary comes from `WEIR_S3S_FS`, else `${WEIR_CACHE:-$HOME/.cache/weir}/bin/s3s-fs`
//! (installed by `worker/storage/install-s3s-fs.sh`). A missing binary fails the test: an S3
//! path that was never exercised must not pass as green.

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

/// Where the `s3s-fs` binary is; panics with the install command when it is missing.
pub fn s3s_fs_binary() -> PathBuf {
    let path = match std::env::var_os("WEIR_S3S_FS") {
        Some(path) => PathBuf::from(path),
        None => {
            let cache = std::env::var_os("WEIR_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")))
                .expect("neither WEIR_CACHE nor HOME is set");
            cache.join("bin/s3s-fs")
        }
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
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("no free loopback port")
            .port();
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let child = Command::new(s3s_fs_binary())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            // s3s logs each request's operation at debug level; tests count them.
            .env("RUST_LOG", "info,s3s::ops=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("cannot start s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "s3s-fs exited with {status} during startup:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on 127.0.0.1:{} within 10 s:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
        StorageOptions {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            path_style: true,
            credentials: Some(StaticCredentials {
                access_key_id: ACCESS_KEY.into(),
                secret_access_key: SECRET_KEY.into(),
            }),
            ..StorageOptions::default()
        }
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
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }
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
