//! The operator's storage access against a real S3-compatible server (`s3s-fs`, started by
//! `weir_storage::testing`) on 127.0.0.1: objects are listed and deleted, and the listing
//! before and after shows exactly what went. A missing s3s-fs binary fails the tests.

use std::path::Path;

use weir_operator::storage::Storage;
use weir_storage::testing::S3sFs;
use weir_storage::{StaticCredentials, StorageOptions};

fn put(root: &Path, key: &str) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"state").unwrap();
}

/// A server with bucket `state` in a temporary directory (removed with the returned guard).
fn start() -> (tempfile::TempDir, S3sFs, StorageOptions) {
    let dir = tempfile::tempdir().unwrap();
    let server = S3sFs::start(dir.path(), &["state"]);
    let options = server.options();
    (dir, server, options)
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
    let (_dir, server, options) = start();
    for key in [
        "orders/cp/job1/chk-1/_metadata",
        "orders/cp/job1/chk-10/_metadata",
        "orders/cp/job1/shared/sst-1",
        "orders/cp/job10/chk-1/_metadata",
        "orders/cp/job2/chk-3/_metadata",
    ] {
        put(&server.root().join("state"), key);
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
    let (_dir, _server, options) = start();
    let wrong = Storage {
        s3: Some(StorageOptions {
            credentials: Some(StaticCredentials {
                access_key_id: weir_storage::testing::ACCESS_KEY.into(),
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
    let (_dir, server, options) = start();
    for key in [
        "orders/cp/job1/chk-9/_metadata",
        "orders/cp/job1/chk-12/_metadata",
        "orders/cp/job1/chk-13/state-0",
        "orders/sp/savepoint-ab-1/_metadata",
        "orders/sp/savepoint-ab-2/_metadata",
    ] {
        put(&server.root().join("state"), key);
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
