//! weir-storage against a real S3-compatible server: each test starts its own `s3s-fs` on a
//! free loopback port over a temporary directory, talks to it through the public API with
//! credentials from the standard AWS environment variables, and stops it at the end.
//!
//! The server binary comes from `WEIR_S3S_FS`, else `${WEIR_CACHE:-$HOME/.cache/weir}/bin/s3s-fs`
//! (installed by `worker/storage/install-s3s-fs.sh`). A missing binary fails the tests: an
//! S3 path that was never exercised must not pass as green.

use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use weir_storage::testing::{ACCESS_KEY, Moto, S3sFs, SECRET_KEY};
use weir_storage::{Bytes, ObjectStore, RetryPolicy, StorageOptions, open};

const BUCKET: &str = "weir-test";

/// The retry budget the tests configure; failures must surface within it (plus slack).
const BUDGET: Duration = Duration::from_secs(3);

/// Puts test credentials where the AWS default chain looks first, and keeps the chain from
/// reaching for profiles or instance metadata.
fn aws_environment() {
    static ONCE: Once = Once::new();
    #[allow(unsafe_code)]
    ONCE.call_once(|| {
        // SAFETY: every test calls this before doing anything else, and `Once` makes the
        // others wait until it has returned, so no thread of this process reads the
        // environment while it is being written.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_PROFILE");
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/weir-test/config");
            std::env::set_var(
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/weir-test/credentials",
            );
        }
    });
}

type Server = S3sFs;

fn options(server: &Server) -> StorageOptions {
    options_at(server.endpoint())
}

/// The test retry policy and timeouts, for the server at `endpoint`.
fn options_at(endpoint: String) -> StorageOptions {
    StorageOptions {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        path_style: true,
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
            budget: BUDGET,
        },
        connect_timeout: Duration::from_secs(1),
        attempt_timeout: Duration::from_secs(20),
        ..StorageOptions::default()
    }
}

fn start() -> (tempfile::TempDir, Server) {
    aws_environment();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[BUCKET]);
    (dir, server)
}

fn paths(store: &Arc<dyn ObjectStore>, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect()
}

/// Deterministic, incompressible-looking bytes so a misplaced part shows up in the comparison.
fn pattern(len: usize) -> Bytes {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn put_get_list_delete_and_delete_prefix_work_against_a_real_s3_server() {
    let (_dir, server) = start();
    let store = open(&format!("s3://{BUCKET}/checkpoints"), &options(&server)).unwrap();

    // 1. Objects written are read back unchanged, under the URI's prefix.
    store
        .put("job-1/chk-1/_metadata", Bytes::from_static(b"meta-1"))
        .unwrap();
    store.put("job-1/chk-1/op-a/kg-0", pattern(1000)).unwrap();
    store
        .put("job-1/chk-2/_metadata", Bytes::from_static(b"meta-2"))
        .unwrap();
    store.put("job-1/shared/sst-7", pattern(10)).unwrap();
    store
        .put("job-2/chk-1/_metadata", Bytes::from_static(b"other"))
        .unwrap();
    assert_eq!(&store.get("job-1/chk-1/_metadata").unwrap()[..], b"meta-1");
    assert_eq!(store.get("job-1/chk-1/op-a/kg-0").unwrap(), pattern(1000));
    assert!(
        server
            .root()
            .join(BUCKET)
            .join("checkpoints/job-1/chk-1/_metadata")
            .is_file()
    );

    // 2. Overwrites replace the object.
    store
        .put("job-1/chk-1/_metadata", Bytes::from_static(b"meta-1b"))
        .unwrap();
    assert_eq!(&store.get("job-1/chk-1/_metadata").unwrap()[..], b"meta-1b");

    // 3. Listing is recursive, sorted, sized, relative to the store's prefix.
    let listed = store.list("job-1/").unwrap();
    let listed: Vec<_> = listed.iter().map(|o| (o.path.as_str(), o.size)).collect();
    assert_eq!(
        listed,
        [
            ("job-1/chk-1/_metadata", 7),
            ("job-1/chk-1/op-a/kg-0", 1000),
            ("job-1/chk-2/_metadata", 6),
            ("job-1/shared/sst-7", 10),
        ]
    );
    assert_eq!(paths(&store, "job-1/chk-").len(), 3);
    assert!(paths(&store, "job-3/").is_empty());

    // 4. After delete the object is absent by every measure; deleting again is fine.
    store.delete("job-1/chk-2/_metadata").unwrap();
    assert!(!store.exists("job-1/chk-2/_metadata").unwrap());
    let err = store.get("job-1/chk-2/_metadata").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string()
            .contains("s3://weir-test/checkpoints/job-1/chk-2/_metadata"),
        "{err}"
    );
    assert!(!paths(&store, "").contains(&"job-1/chk-2/_metadata".to_string()));
    store.delete("job-1/chk-2/_metadata").unwrap();
    assert!(store.exists("job-1/chk-1/_metadata").unwrap());

    // 5. delete_prefix removes exactly the matching objects and counts them.
    assert_eq!(store.delete_prefix("job-1/chk-1/").unwrap(), 2);
    assert_eq!(
        paths(&store, ""),
        ["job-1/shared/sst-7", "job-2/chk-1/_metadata"]
    );
    assert_eq!(store.delete_prefix("job-1/chk-1/").unwrap(), 0);
    assert_eq!(store.delete_prefix("").unwrap(), 2);
    assert!(paths(&store, "").is_empty());
    assert!(server.requests("DeleteObjects") >= 2, "deleted in batches");

    // 6. Small objects are single requests.
    assert_eq!(server.requests("CreateMultipartUpload"), 0);
}

#[test]
fn a_multipart_upload_stays_invisible_until_completed_is_listed_until_then_and_completes_once() {
    let (_dir, server) = start();
    let store = open(&format!("s3://{BUCKET}/out"), &options(&server)).unwrap();
    multipart_upload_contract(&store, &|| server.open_uploads());
}

/// moto's server and a store below `out/` in its bucket.
fn start_moto() -> (tempfile::TempDir, Moto, Arc<dyn ObjectStore>) {
    aws_environment();
    let dir = tempfile::tempdir().unwrap();
    let server = Moto::start(dir.path(), &[BUCKET]);
    let store = open(
        &format!("s3://{BUCKET}/out"),
        &options_at(server.endpoint()),
    )
    .unwrap();
    (dir, server, store)
}

/// The same contract on a server with ListMultipartUploads (moto), where uploads are found
/// without their markers too.
#[test]
fn the_multipart_contract_holds_where_the_server_lists_uploads() {
    let (_dir, server, store) = start_moto();
    multipart_upload_contract(&store, &|| server.open_uploads(BUCKET));
}

/// A writer killed between `CreateMultipartUpload` and recording the upload leaves an upload
/// that only the server knows of. Where the server lists uploads, the store finds it below its
/// prefix (and only there) and aborts it, so the file sink's recovery leaves nothing open.
#[test]
fn an_upload_whose_writer_died_before_recording_it_is_listed_and_aborted_where_the_server_lists_uploads()
 {
    let (_dir, server, store) = start_moto();
    let recorded = store.create_upload("dt=1/part-a").unwrap();
    let unrecorded = server.create_unrecorded_upload(BUCKET, "out/dt=2/part-b");
    let elsewhere = server.create_unrecorded_upload(BUCKET, "other/part-c");
    let listed: Vec<(String, String)> = store
        .list_uploads("")
        .unwrap()
        .into_iter()
        .map(|u| (u.path, u.id))
        .collect();
    assert_eq!(
        listed,
        [
            ("dt=1/part-a".to_owned(), recorded.clone()),
            ("dt=2/part-b".to_owned(), unrecorded.clone())
        ],
        "both uploads below the prefix, each once, nothing outside it ({elsewhere})"
    );
    assert_eq!(store.list_uploads("dt=2/").unwrap().len(), 1);

    for (path, id) in &listed {
        store.abort_upload(path, id).unwrap();
        store.abort_upload(path, id).unwrap();
    }
    assert!(store.list_uploads("").unwrap().is_empty());
    assert_eq!(server.open_uploads(BUCKET), ["other/part-c"]);
}

fn multipart_upload_contract(store: &Arc<dyn ObjectStore>, open_uploads: &dyn Fn() -> Vec<String>) {
    let big = pattern(5 << 20);

    // 1. Created and part-uploaded: listed as an upload, no object anywhere.
    let id = store.create_upload("dt=1/part-a").unwrap();
    let other = store.create_upload("dt=2/part-b").unwrap();
    let parts = vec![
        store
            .upload_part("dt=1/part-a", &id, 1, big.clone())
            .unwrap(),
        store
            .upload_part("dt=1/part-a", &id, 2, Bytes::from_static(b"tail"))
            .unwrap(),
    ];
    assert!(
        paths(store, "").is_empty(),
        "nothing visible before completion"
    );
    let listed = store.list_uploads("dt=1/").unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].path.as_str(), listed[0].id.as_str()),
        ("dt=1/part-a", id.as_str())
    );
    assert_eq!(store.list_uploads("").unwrap().len(), 2);

    // 2. Completed: the object is the parts in order; completing again changes nothing.
    store.complete_upload("dt=1/part-a", &id, &parts).unwrap();
    let read = store.get("dt=1/part-a").unwrap();
    assert_eq!(read.len(), (5 << 20) + 4);
    assert!(read[..5 << 20] == big[..] && &read[5 << 20..] == b"tail");
    store.complete_upload("dt=1/part-a", &id, &parts).unwrap();
    assert_eq!(
        paths(store, ""),
        ["dt=1/part-a"],
        "bookkeeping is never listed"
    );

    // 3. Aborted: gone from the server; aborting again is fine.
    store.abort_upload("dt=2/part-b", &other).unwrap();
    store.abort_upload("dt=2/part-b", &other).unwrap();
    assert!(store.list_uploads("").unwrap().is_empty());
    assert!(open_uploads().is_empty(), "{:?}", open_uploads());
    assert_eq!(paths(store, ""), ["dt=1/part-a"]);

    // 4. A completion whose parts never made it fails, naming the key.
    let lost = store.create_upload("part-c").unwrap();
    let err = store
        .complete_upload(
            "part-c",
            &lost,
            &[weir_storage::UploadedPart {
                number: 1,
                etag: String::new(),
                size: 3,
            }],
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("s3://weir-test/out/part-c"),
        "{err}"
    );
}

#[test]
fn a_20_mib_object_is_uploaded_in_parts_and_read_back_byte_exact() {
    let (_dir, server) = start();
    let options = StorageOptions {
        multipart_threshold: 6 << 20,
        // The smallest part S3 (and s3s-fs) accepts, well below the 8 MiB default.
        multipart_part_size: 5 << 20,
        ..options(&server)
    };
    let store = open(&format!("s3://{BUCKET}"), &options).unwrap();
    // Five parts; not a multiple of the part size, so the last part is short.
    let data = pattern((20 << 20) + 12_345);

    store.put("job/chk-1/op/state", data.clone()).unwrap();
    assert_eq!(server.requests("CreateMultipartUpload"), 1);
    assert_eq!(server.requests("UploadPart"), 5);
    assert_eq!(server.requests("CompleteMultipartUpload"), 1);
    assert_eq!(server.requests("PutObject"), 0);

    let read = store.get("job/chk-1/op/state").unwrap();
    assert_eq!(read.len(), data.len());
    assert!(
        read == data,
        "multipart object differs from what was written"
    );
    assert_eq!(store.list("job/").unwrap()[0].size, data.len() as u64);
    let on_disk = std::fs::read(server.root().join(BUCKET).join("job/chk-1/op/state")).unwrap();
    assert!(
        on_disk == data[..],
        "server's file differs from what was written"
    );
}

#[test]
fn operations_fail_promptly_while_the_server_is_down_and_succeed_after_it_restarts() {
    let (_dir, mut server) = start();
    let store = open(&format!("s3://{BUCKET}/ft"), &options(&server)).unwrap();
    store
        .put("job/chk-1/_metadata", Bytes::from_static(b"before"))
        .unwrap();

    // 1. Server stopped mid-run: every operation fails within the retry budget, and the error
    //    names endpoint, bucket and key.
    server.stop();
    let endpoint = server.endpoint();
    type Op<'a> = (
        &'a str,
        Box<dyn Fn() -> Result<(), weir_storage::StorageError> + 'a>,
    );
    let operations: Vec<Op<'_>> = vec![
        (
            "put",
            Box::new(|| store.put("job/chk-2/_metadata", Bytes::from_static(b"during"))),
        ),
        (
            "get",
            Box::new(|| store.get("job/chk-1/_metadata").map(drop)),
        ),
        ("list", Box::new(|| store.list("job/").map(drop))),
        (
            "exists",
            Box::new(|| store.exists("job/chk-1/_metadata").map(drop)),
        ),
        ("delete", Box::new(|| store.delete("job/chk-1/_metadata"))),
    ];
    for (name, operation) in &operations {
        let started = Instant::now();
        let err = operation().expect_err(name);
        let elapsed = started.elapsed();
        let message = err.to_string();
        eprintln!("{name} failed after {elapsed:?}: {message}");
        assert!(
            elapsed < BUDGET + Duration::from_secs(2),
            "{name} took {elapsed:?}: {message}"
        );
        assert!(!err.is_not_found(), "{name}: {message}");
        for needle in [
            endpoint.as_str(),
            "s3://weir-test/ft/job/",
            "connection failed",
        ] {
            assert!(
                message.contains(needle),
                "{name}: '{needle}' missing in: {message}"
            );
        }
        assert!(
            std::error::Error::source(&err).is_some(),
            "{name}: cause not kept"
        );
    }
    let err = operations[0].1().unwrap_err().to_string();
    assert!(
        err.contains("PutObject") && err.contains("3 attempt(s)"),
        "{err}"
    );

    // 2. Restarted on the same port and directory: the same store works again, and what was
    //    written before the outage is still there.
    server.restart();
    store
        .put("job/chk-2/_metadata", Bytes::from_static(b"after"))
        .unwrap();
    assert_eq!(&store.get("job/chk-1/_metadata").unwrap()[..], b"before");
    assert_eq!(&store.get("job/chk-2/_metadata").unwrap()[..], b"after");
    assert_eq!(store.delete_prefix("job/").unwrap(), 2);
}

#[test]
fn task_threads_share_one_store_concurrently() {
    let (_dir, server) = start();
    let store = open(&format!("s3://{BUCKET}/shared"), &options(&server)).unwrap();
    // One OS thread per task, as the engine runs them, all blocking on the same store.
    std::thread::scope(|scope| {
        for task in 0..4 {
            let store = Arc::clone(&store);
            scope.spawn(move || {
                for n in 0..10 {
                    let path = format!("job/chk-{n}/task-{task}");
                    let bytes = pattern(1000 + task * 100 + n);
                    store.put(&path, bytes.clone()).unwrap();
                    assert_eq!(store.get(&path).unwrap(), bytes);
                }
            });
        }
    });
    assert_eq!(store.list("job/").unwrap().len(), 40);
    assert_eq!(store.list("job/chk-3/").unwrap().len(), 4);
}
