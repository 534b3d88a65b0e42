//! The S3 client against a real S3-compatible server (`s3s-fs`, as the test environment
//! installs it) on 127.0.0.1: objects are listed and deleted, and the listing before and after
//! shows exactly what went. Set `WEIR_S3S_FS` to the binary; without one the test says so and
//! checks nothing.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weir_operator::storage::Storage;
use weir_storage::{StaticCredentials, StorageOptions};

struct Server {
    child: Child,
    root: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The s3s-fs binary; a missing one fails the test (it must never pass unchecked).
fn s3s_fs() -> Option<PathBuf> {
    let cache = std::env::var_os("WEIR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir")))
        .unwrap_or_default();
    let path = std::env::var_os("WEIR_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| cache.join("bin/s3s-fs"));
    assert!(
        path.is_file(),
        "s3s-fs not found at {}: run bash worker/storage/install-s3s-fs.sh (or set WEIR_S3S_FS)",
        path.display()
    );
    Some(path)
}

fn put(root: &Path, key: &str) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"state").unwrap();
}

async fn start(binary: &Path) -> (Server, StorageOptions) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let root = std::env::temp_dir().join(format!("weir-s3-{}-{port}", std::process::id()));
    std::fs::create_dir_all(root.join("state")).unwrap();
    let child = Command::new(binary)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", "weir", "--secret-key", "weir-secret"])
        .arg(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { child, root };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options = StorageOptions {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: Some("us-east-1".into()),
        path_style: true,
        credentials: Some(StaticCredentials {
            access_key_id: "weir".into(),
            secret_access_key: "weir-secret".into(),
        }),
        ..Default::default()
    };
    (server, options)
}

/// Every object key in the bucket under `prefix`, sorted.
async fn list(options: &StorageOptions, prefix: &str) -> Vec<String> {
    let (options, prefix) = (options.clone(), prefix.to_string());
    tokio::task::spawn_blocking(move || {
        let store = weir_storage::open("s3://state", &options).unwrap();
        let mut keys: Vec<String> = store
            .list(&prefix)
            .unwrap()
            .into_iter()
            .map(|o| o.path)
            .collect();
        keys.sort();
        keys
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_runs_checkpoints_are_deleted_and_nothing_else() {
    let Some(binary) = s3s_fs() else {
        unreachable!("s3s_fs() fails the test when the binary is missing");
    };
    let (server, options) = start(&binary).await;
    for key in [
        "orders/cp/job1/chk-1/_metadata",
        "orders/cp/job1/chk-10/_metadata",
        "orders/cp/job1/shared/sst-1",
        "orders/cp/job10/chk-1/_metadata",
        "orders/cp/job2/chk-3/_metadata",
    ] {
        put(&server.root.join("state"), key);
    }
    assert_eq!(list(&options, "orders/cp/").await.len(), 5);
    let storage = Storage {
        s3: Some(options.clone()),
    };
    storage.delete("s3://state/orders/cp/job1").await.unwrap();
    assert_eq!(
        list(&options, "orders/cp/").await,
        [
            "orders/cp/job10/chk-1/_metadata",
            "orders/cp/job2/chk-3/_metadata"
        ],
        "job10 shares job1's prefix but is another run"
    );
    // Deleting again finds nothing and succeeds.
    storage.delete("s3://state/orders/cp/job1").await.unwrap();
}

#[tokio::test]
async fn a_wrong_secret_is_reported_with_the_servers_answer() {
    let Some(binary) = s3s_fs() else {
        unreachable!("s3s_fs() fails the test when the binary is missing");
    };
    let (_server, options) = start(&binary).await;
    let wrong = Storage {
        s3: Some(StorageOptions {
            credentials: Some(StaticCredentials {
                access_key_id: "weir".into(),
                secret_access_key: "wrong".into(),
            }),
            ..options
        }),
    };
    let error = wrong
        .delete("s3://state/orders/sp/savepoint-1")
        .await
        .unwrap_err();
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        chain.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(
        chain.contains("SignatureDoesNotMatch") || chain.contains("403"),
        "{chain}"
    );
}

#[tokio::test]
async fn the_latest_checkpoint_of_a_run_is_found_in_s3_and_a_savepoint_deleted_through_storage() {
    let Some(binary) = s3s_fs() else {
        unreachable!("s3s_fs() fails the test when the binary is missing");
    };
    let (server, options) = start(&binary).await;
    for key in [
        "orders/cp/job1/chk-9/_metadata",
        "orders/cp/job1/chk-12/_metadata",
        "orders/cp/job1/chk-13/state-0",
        "orders/sp/savepoint-ab-1/_metadata",
        "orders/sp/savepoint-ab-2/_metadata",
    ] {
        put(&server.root.join("state"), key);
    }
    let storage = Storage {
        s3: Some(options.clone()),
    };
    assert_eq!(
        storage
            .latest_checkpoint("s3://state/orders/cp", "job1")
            .await
            .as_deref(),
        Some("s3://state/orders/cp/job1/chk-12"),
        "chk-13 has no _metadata yet"
    );
    storage
        .delete("s3://state/orders/sp/savepoint-ab-1")
        .await
        .unwrap();
    assert_eq!(
        list(&options, "orders/sp/").await,
        ["orders/sp/savepoint-ab-2/_metadata"]
    );
}
