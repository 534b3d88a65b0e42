//! Without credentials anywhere in the AWS chain, S3 operations fail at once, without retries
//! or network traffic, and say that credentials are missing. A separate test binary because it
//! needs a process environment with no AWS credentials in it.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use weir_storage::{Bytes, StorageOptions, open};

#[test]
fn missing_credentials_fail_the_operation_at_once_naming_the_problem() {
    #[allow(unsafe_code)]
    // SAFETY: the only test in this binary, run before any client exists: no other thread reads
    // the environment while it is changed.
    unsafe {
        for var in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            std::env::remove_var(var);
        }
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/weir-test/config");
        std::env::set_var(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/weir-test/credentials",
        );
    }
    // A port that refuses connections: no request must get that far anyway.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = StorageOptions {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        path_style: true,
        ..StorageOptions::default()
    };
    let store = open("s3://bucket", &options).unwrap();

    let started = Instant::now();
    let err = store
        .put("job/chk-1/_metadata", Bytes::from_static(b"m"))
        .unwrap_err();
    let message = err.to_string();
    eprintln!("{message}");
    assert!(started.elapsed() < Duration::from_secs(2), "{message}");
    assert!(message.contains("after 1 attempt(s)"), "{message}");
    assert!(message.to_lowercase().contains("credential"), "{message}");
}
