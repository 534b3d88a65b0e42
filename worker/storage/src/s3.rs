//! The S3 store behind `s3://bucket/prefix` URIs, on aws-sdk-s3. The SDK is asynchronous; this
//! store owns a small private tokio runtime and blocks the calling thread on it, so the engine's
//! task threads use it like a file. Requests are retried here (the SDK's own retries are off)
//! so that attempts and total time are bounded in one place and the final error names the
//! endpoint, bucket and key.
//!
//! Multipart uploads started through [`ObjectStore::create_upload`] are recorded by an empty
//! marker object `.weir-tmp-uploads/<path>/<hex upload id>` below the store's prefix, removed
//! when the upload completes or is aborted: listing the markers finds a crashed writer's
//! uploads on every S3-compatible server, also those without ListMultipartUploads. Where the
//! server has ListMultipartUploads (S3 itself, MinIO, …), its answer is merged in, so an upload
//! whose writer died between `CreateMultipartUpload` and writing the marker is found too.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use aws_config::BehaviorVersion;
use aws_config::retry::{ErrorKind, RetryConfig};
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;

use aws_sdk_s3::config::{Region, RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use bytes::Bytes;

use crate::error::{BoxError, Result, S3Error, StorageError};
use crate::options::{MIN_PART_SIZE, RetryPolicy, StorageOptions};
use crate::path::{UPLOADS_DIR, hex, is_internal, unhex, validate_key, validate_prefix};
use crate::{ObjectMeta, ObjectStore, Upload, UploadedPart};

/// Region used with an endpoint override when none is configured: S3-compatible servers
/// accept any, and signing needs one.
const FALLBACK_REGION: &str = "us-east-1";
/// DeleteObjects accepts at most this many keys per request.
const DELETE_BATCH: usize = 1000;

/// An [`ObjectStore`] over an S3 bucket, optionally below a key prefix.
pub struct S3Store {
    client: Client,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    /// Key prefix of every object, empty or ending in `/`.
    root: String,
    /// For error messages: the endpoint override, or a description of AWS's endpoint.
    endpoint: String,
    retry: RetryPolicy,
    /// Bound of one whole attempt, body included (`StorageOptions::attempt_timeout`).
    attempt_timeout: Duration,
    multipart_threshold: usize,
    part_size: usize,
    /// Whether the server implements ListMultipartUploads: [`UNKNOWN`] until the first
    /// listing, then [`LISTS_UPLOADS`] or [`NO_UPLOAD_LISTING`] (s3s-fs answers 501).
    upload_listing: AtomicU8,
}

const UNKNOWN: u8 = 0;
const LISTS_UPLOADS: u8 = 1;
const NO_UPLOAD_LISTING: u8 = 2;

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("root", &self.root)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl S3Store {
    /// A store for `bucket`, with every key placed below `prefix` (may be empty). Credentials
    /// come from the standard AWS chain (environment, profile, web identity, container and
    /// instance metadata) and are resolved on first use. Opening touches the network only when
    /// neither a region nor an endpoint is configured: then the AWS region chain is asked, which
    /// may query instance metadata.
    pub fn new(bucket: &str, prefix: &str, options: &StorageOptions) -> Result<Self> {
        if bucket.is_empty() {
            return Err(StorageError::InvalidUri {
                uri: format!("s3://{bucket}/{prefix}"),
                reason: "the bucket name is empty",
            });
        }
        if options.multipart_part_size < MIN_PART_SIZE {
            return Err(StorageError::InvalidOption {
                key: "multipart_part_size".to_owned(),
                value: options.multipart_part_size.to_string(),
                reason: "S3 requires parts of at least 5 MiB (5242880 bytes)",
            });
        }
        let prefix = prefix.trim_matches('/');
        validate_prefix(prefix)?;
        let root = if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        };

        // One worker thread drives all connections; callers block on it from their own threads.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("weir-s3")
            .enable_all()
            .build()
            .map_err(StorageError::Runtime)?;

        let http_client = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(options.connect_timeout)
            .operation_attempt_timeout(options.attempt_timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client)
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts);
        // Asking the region chain would fall through to instance metadata, which is pointless
        // (and slow) for an S3-compatible server.
        let region = match (&options.region, &options.endpoint) {
            (Some(region), _) => Some(region.clone()),
            (None, Some(_)) => Some(FALLBACK_REGION.to_owned()),
            (None, None) => None,
        };
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(c) = &options.credentials {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                None,
                None,
                "weir-static",
            ));
        }
        let sdk_config = block_on(&runtime, loader.load());

        let mut config =
            aws_sdk_s3::config::Builder::from(&sdk_config).force_path_style(options.path_style);
        let endpoint = match &options.endpoint {
            Some(endpoint) => {
                config = config
                    .endpoint_url(endpoint)
                    // Many S3-compatible servers reject or mishandle the newer default
                    // checksum headers; send them only where S3 requires them.
                    .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
                endpoint.clone()
            }
            None => format!(
                "AWS S3 ({})",
                sdk_config
                    .region()
                    .map_or("region from the AWS chain", |r| r.as_ref())
            ),
        };
        let part_size = options.multipart_part_size;
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            runtime,
            bucket: bucket.to_owned(),
            root,
            endpoint,
            retry: options.retry.clone(),
            attempt_timeout: options.attempt_timeout,
            multipart_threshold: options.multipart_threshold.max(part_size),
            part_size,
            upload_listing: AtomicU8::new(UNKNOWN),
        })
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn key(&self, path: &str) -> String {
        format!("{}{path}", self.root)
    }

    /// Runs `attempt` until it succeeds, fails permanently, or the retry policy is exhausted.
    async fn retry<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let started = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            // The SDK's attempt timeout ends at the response's head; a body that stops
            // arriving (a server killed or stalled mid-response on a connection that stays
            // open) would otherwise hold the caller forever.
            let failure = match tokio::time::timeout(self.attempt_timeout, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(failure)) => failure,
                Err(_) => {
                    let cause = format!(
                        "timed out: no complete answer within {:?}",
                        self.attempt_timeout
                    );
                    Failure {
                        kind: Kind::Transient,
                        source: cause.clone().into(),
                        cause,
                    }
                }
            };
            let give_up = |failure: Failure| match failure.kind {
                Kind::NotFound => StorageError::NotFound {
                    location: format!("s3://{}/{key}", self.bucket),
                },
                _ => StorageError::from(S3Error {
                    operation,
                    endpoint: self.endpoint.clone(),
                    bucket: self.bucket.clone(),
                    key: key.to_owned(),
                    attempts,
                    elapsed: started.elapsed(),
                    cause: failure.cause,
                    source: failure.source,
                }),
            };
            if failure.kind != Kind::Transient || attempts >= self.retry.max_attempts {
                return Err(give_up(failure));
            }
            let delay = self.retry.backoff(attempts, random());
            if started.elapsed() + delay > self.retry.budget {
                return Err(give_up(failure));
            }
            tracing::debug!(
                operation,
                bucket = %self.bucket,
                key,
                attempt = attempts,
                cause = %failure.cause,
                ?delay,
                "transient S3 failure, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    async fn put_single(&self, key: &str, bytes: Bytes) -> Result<()> {
        let (client, bucket, bytes) = (&self.client, &self.bucket, &bytes);
        self.retry("PutObject", key, move || async move {
            client
                .put_object()
                .bucket(bucket)
                .key(key)
                .body(ByteStream::from(bytes.clone()))
                .send()
                .await
                .map_err(Failure::from_sdk)?;
            Ok(())
        })
        .await
    }

    async fn create_multipart(&self, key: &str) -> Result<String> {
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry("CreateMultipartUpload", key, move || async move {
            let output = client
                .create_multipart_upload()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .map_err(Failure::from_sdk)?;
            output
                .upload_id
                .ok_or_else(|| Failure::permanent("the response carries no upload id"))
        })
        .await
    }

    async fn upload_one_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: u32,
        chunk: &Bytes,
    ) -> Result<UploadedPart> {
        let (client, bucket) = (&self.client, &self.bucket);
        let number = i32::try_from(part_number).unwrap_or(i32::MAX);
        let e_tag = self
            .retry("UploadPart", key, move || async move {
                let output = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(chunk.clone()))
                    .send()
                    .await
                    .map_err(Failure::from_sdk)?;
                Ok(output.e_tag)
            })
            .await?;
        Ok(UploadedPart {
            number: part_number,
            etag: e_tag.unwrap_or_default(),
            size: chunk.len() as u64,
        })
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[UploadedPart],
    ) -> Result<()> {
        let (client, bucket) = (&self.client, &self.bucket);
        let parts = parts
            .iter()
            .map(|p| {
                CompletedPart::builder()
                    .set_e_tag((!p.etag.is_empty()).then(|| p.etag.clone()))
                    .part_number(i32::try_from(p.number).unwrap_or(i32::MAX))
                    .build()
            })
            .collect();
        let completed = &CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        self.retry("CompleteMultipartUpload", key, move || async move {
            client
                .complete_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(completed.clone())
                .send()
                .await
                .map_err(Failure::from_sdk)?;
            Ok(())
        })
        .await
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()> {
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry("AbortMultipartUpload", key, move || async move {
            match client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => match Failure::from_sdk(e) {
                    // NoSuchUpload: aborted or completed before.
                    f if f.kind == Kind::NotFound => Ok(()),
                    f => Err(f),
                },
            }
        })
        .await
    }

    async fn put_multipart(&self, key: &str, bytes: Bytes) -> Result<()> {
        let upload_id = self.create_multipart(key).await?;
        let upload_id = upload_id.as_str();

        let uploaded = async {
            let mut parts = Vec::new();
            for (index, offset) in (0..bytes.len()).step_by(self.part_size).enumerate() {
                let chunk = bytes.slice(offset..bytes.len().min(offset + self.part_size));
                let number = u32::try_from(index + 1).unwrap_or(u32::MAX);
                parts.push(self.upload_one_part(key, upload_id, number, &chunk).await?);
            }
            self.complete_multipart(key, upload_id, &parts).await
        }
        .await;

        if uploaded.is_err() {
            // Best effort: parts of an abandoned upload cost storage until aborted (or until a
            // bucket lifecycle rule cleans them up).
            if let Err(e) = self.abort_multipart(key, upload_id).await {
                tracing::warn!(bucket = %self.bucket, key, upload_id, error = %e,
                    "cannot abort multipart upload; its parts stay until a lifecycle rule removes them");
            }
        }
        uploaded
    }

    /// The marker recording upload `id` of `path` (a store-relative path).
    fn upload_marker(path: &str, id: &str) -> String {
        format!("{UPLOADS_DIR}/{path}/{}", hex(id.as_bytes()))
    }

    /// The object's size, or `None` when it does not exist.
    async fn head_size(&self, key: &str) -> Result<Option<u64>> {
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry("HeadObject", key, move || async move {
            match client.head_object().bucket(bucket).key(key).send().await {
                Ok(output) => Ok(Some(
                    output
                        .content_length()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                )),
                Err(e) => match Failure::from_sdk(e) {
                    f if f.kind == Kind::NotFound => Ok(None),
                    f => Err(f),
                },
            }
        })
        .await
    }

    async fn delete_key(&self, key: &str) -> Result<()> {
        let (client, bucket) = (&self.client, &self.bucket);
        self.retry("DeleteObject", key, move || async move {
            match client.delete_object().bucket(bucket).key(key).send().await {
                Ok(_) => Ok(()),
                Err(e) => match Failure::from_sdk(e) {
                    // S3 answers 204 for a missing key; some compatible servers say 404.
                    f if f.kind == Kind::NotFound => Ok(()),
                    f => Err(f),
                },
            }
        })
        .await
    }

    async fn list_keys(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full_prefix = self.key(prefix);
        let (client, bucket, full_prefix_ref) = (&self.client, &self.bucket, &full_prefix);
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let token_ref = &token;
            let page = self
                .retry("ListObjectsV2", full_prefix_ref, move || async move {
                    client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(full_prefix_ref)
                        .set_continuation_token(token_ref.clone())
                        .send()
                        .await
                        .map_err(Failure::from_sdk)
                })
                .await?;
            for object in page.contents() {
                let Some(key) = object.key().and_then(|k| k.strip_prefix(&self.root)) else {
                    continue;
                };
                objects.push(ObjectMeta {
                    path: key.to_owned(),
                    size: object
                        .size()
                        .and_then(|s| u64::try_from(s).ok())
                        .unwrap_or(0),
                });
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        objects.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(objects)
    }

    /// The uploads the server holds open below the store-relative `prefix`, as (path, id), or
    /// `None` when the server does not implement ListMultipartUploads (HTTP 501
    /// `NotImplemented`, as s3s-fs answers).
    async fn list_multipart(&self, prefix: &str) -> Result<Option<Vec<Upload>>> {
        if self.upload_listing.load(Ordering::Relaxed) == NO_UPLOAD_LISTING {
            return Ok(None);
        }
        let full_prefix = self.key(prefix);
        let (client, bucket, full_prefix_ref) = (&self.client, &self.bucket, &full_prefix);
        let mut uploads = Vec::new();
        let mut markers: (Option<String>, Option<String>) = (None, None);
        loop {
            let markers_ref = &markers;
            let page = self
                .retry(
                    "ListMultipartUploads",
                    full_prefix_ref,
                    move || async move {
                        match client
                            .list_multipart_uploads()
                            .bucket(bucket)
                            .prefix(full_prefix_ref)
                            .set_key_marker(markers_ref.0.clone())
                            .set_upload_id_marker(markers_ref.1.clone())
                            .send()
                            .await
                        {
                            Ok(page) => Ok(Some(page)),
                            Err(e) if not_implemented(&e) => Ok(None),
                            Err(e) => Err(Failure::from_sdk(e)),
                        }
                    },
                )
                .await?;
            let Some(page) = page else {
                self.upload_listing
                    .store(NO_UPLOAD_LISTING, Ordering::Relaxed);
                return Ok(None);
            };
            self.upload_listing.store(LISTS_UPLOADS, Ordering::Relaxed);
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let Some(path) = key.strip_prefix(&self.root) else {
                    continue;
                };
                uploads.push(Upload {
                    path: path.to_owned(),
                    id: id.to_owned(),
                });
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            markers = (
                page.next_key_marker().map(str::to_owned),
                page.next_upload_id_marker().map(str::to_owned),
            );
            if markers.0.is_none() {
                break;
            }
        }
        Ok(Some(uploads))
    }

    async fn delete_batch(&self, prefix_key: &str, keys: &[String]) -> Result<usize> {
        let mut identifiers = Vec::with_capacity(keys.len());
        for key in keys {
            let id = ObjectIdentifier::builder()
                .key(key)
                .build()
                .map_err(|e| self.build_error("DeleteObjects", key, e))?;
            identifiers.push(id);
        }
        let delete = Delete::builder()
            .set_objects(Some(identifiers))
            .quiet(true)
            .build()
            .map_err(|e| self.build_error("DeleteObjects", prefix_key, e))?;
        let (client, bucket, delete) = (&self.client, &self.bucket, &delete);
        let output = self
            .retry("DeleteObjects", prefix_key, move || async move {
                client
                    .delete_objects()
                    .bucket(bucket)
                    .delete(delete.clone())
                    .send()
                    .await
                    .map_err(Failure::from_sdk)
            })
            .await?;
        if let Some(error) = output.errors().first() {
            let key = error.key().unwrap_or(prefix_key);
            let cause = format!(
                "{} of {} keys not deleted; first: {}: {}",
                output.errors().len(),
                keys.len(),
                error.code().unwrap_or("unknown error"),
                error.message().unwrap_or("")
            );
            return Err(StorageError::from(S3Error {
                operation: "DeleteObjects",
                endpoint: self.endpoint.clone(),
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                attempts: 1,
                elapsed: Default::default(),
                source: cause.clone().into(),
                cause,
            }));
        }
        Ok(keys.len())
    }

    fn build_error(
        &self,
        operation: &'static str,
        key: &str,
        e: impl Into<BoxError>,
    ) -> StorageError {
        let source = e.into();
        StorageError::from(S3Error {
            operation,
            endpoint: self.endpoint.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            attempts: 0,
            elapsed: Default::default(),
            cause: format!("cannot build the request: {source}"),
            source,
        })
    }
}

impl ObjectStore for S3Store {
    fn put(&self, path: &str, bytes: Bytes) -> Result<()> {
        validate_key(path)?;
        let key = self.key(path);
        if bytes.len() > self.multipart_threshold {
            block_on(&self.runtime, self.put_multipart(&key, bytes))
        } else {
            block_on(&self.runtime, self.put_single(&key, bytes))
        }
    }

    fn get(&self, path: &str) -> Result<Bytes> {
        validate_key(path)?;
        let key = &self.key(path);
        let (client, bucket) = (&self.client, &self.bucket);
        block_on(
            &self.runtime,
            self.retry("GetObject", key, move || async move {
                let output = client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(Failure::from_sdk)?;
                // A connection dropped mid-body is as transient as one that never opened.
                let body = output.body.collect().await.map_err(|e| Failure {
                    kind: Kind::Transient,
                    cause: format!("reading the body failed: {}", innermost(&e)),
                    source: e.into(),
                })?;
                Ok(body.into_bytes())
            }),
        )
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        validate_prefix(prefix)?;
        let mut objects = block_on(&self.runtime, self.list_keys(prefix))?;
        objects.retain(|o| !is_internal(&o.path));
        Ok(objects)
    }

    fn delete(&self, path: &str) -> Result<()> {
        validate_key(path)?;
        block_on(&self.runtime, self.delete_key(&self.key(path)))
    }

    fn delete_prefix(&self, prefix: &str) -> Result<usize> {
        validate_prefix(prefix)?;
        block_on(&self.runtime, async {
            let keys: Vec<String> = self
                .list_keys(prefix)
                .await?
                .into_iter()
                .filter(|o| !is_internal(&o.path))
                .map(|o| self.key(&o.path))
                .collect();
            let prefix_key = self.key(prefix);
            let mut deleted = 0;
            for batch in keys.chunks(DELETE_BATCH) {
                deleted += self.delete_batch(&prefix_key, batch).await?;
            }
            Ok(deleted)
        })
    }

    fn exists(&self, path: &str) -> Result<bool> {
        validate_key(path)?;
        let key = &self.key(path);
        let (client, bucket) = (&self.client, &self.bucket);
        block_on(
            &self.runtime,
            self.retry("HeadObject", key, move || async move {
                match client.head_object().bucket(bucket).key(key).send().await {
                    Ok(_) => Ok(true),
                    Err(e) => match Failure::from_sdk(e) {
                        f if f.kind == Kind::NotFound => Ok(false),
                        f => Err(f),
                    },
                }
            }),
        )
    }

    fn uri(&self, path: &str) -> String {
        let key = self.key(path);
        format!("s3://{}/{}", self.bucket, key.trim_end_matches('/'))
    }

    fn create_upload(&self, path: &str) -> Result<String> {
        validate_key(path)?;
        let key = &self.key(path);
        block_on(&self.runtime, async {
            let id = self.create_multipart(key).await?;
            let marker = self.key(&Self::upload_marker(path, &id));
            if let Err(e) = self.put_single(&marker, Bytes::new()).await {
                // Unrecorded, the upload could not be found again: give it up now.
                if let Err(abort) = self.abort_multipart(key, &id).await {
                    tracing::warn!(bucket = %self.bucket, key, upload_id = %id, error = %abort,
                        "cannot abort an unrecorded multipart upload; its parts stay until a lifecycle rule removes them");
                }
                return Err(e);
            }
            Ok(id)
        })
    }

    fn upload_part(&self, path: &str, id: &str, number: u32, bytes: Bytes) -> Result<UploadedPart> {
        validate_key(path)?;
        let key = &self.key(path);
        block_on(&self.runtime, self.upload_one_part(key, id, number, &bytes))
    }

    fn complete_upload(&self, path: &str, id: &str, parts: &[UploadedPart]) -> Result<()> {
        validate_key(path)?;
        let key = &self.key(path);
        let total: u64 = parts.iter().map(|p| p.size).sum();
        block_on(&self.runtime, async {
            if let Err(e) = self.complete_multipart(key, id, parts).await {
                // Servers answer a second completion with NoSuchUpload (or, like s3s-fs, with
                // AccessDenied): the upload is done when its object is there in full. Keys
                // are unique per upload, so an object of that size is this upload's.
                match self.head_size(key).await {
                    Ok(Some(size)) if size == total => {}
                    _ => return Err(e),
                }
            }
            self.delete_key(&self.key(&Self::upload_marker(path, id)))
                .await
        })
    }

    fn abort_upload(&self, path: &str, id: &str) -> Result<()> {
        validate_key(path)?;
        let key = &self.key(path);
        let marker = &self.key(&Self::upload_marker(path, id));
        block_on(&self.runtime, async {
            if self.head_size(marker).await?.is_none() {
                // Completed or aborted before (every upload this store starts has a marker
                // until then; servers disagree on what a second abort answers), or listed by
                // the server without a marker: its writer died before writing one. Only a
                // server that lists uploads can have shown us such an upload, and such servers
                // answer an unknown upload with NoSuchUpload, which `abort_multipart` accepts.
                if self.upload_listing.load(Ordering::Relaxed) == LISTS_UPLOADS {
                    return self.abort_multipart(key, id).await;
                }
                return Ok(());
            }
            if let Err(e) = self.abort_multipart(key, id).await {
                // A marker left by a writer that crashed after completing its upload: the
                // server no longer knows the id (NoSuchUpload, or AccessDenied on s3s-fs),
                // and the object is there.
                if !matches!(self.head_size(key).await, Ok(Some(_))) {
                    return Err(e);
                }
            }
            self.delete_key(marker).await
        })
    }

    fn list_uploads(&self, prefix: &str) -> Result<Vec<Upload>> {
        validate_prefix(prefix)?;
        let markers = block_on(
            &self.runtime,
            self.list_keys(&format!("{UPLOADS_DIR}/{prefix}")),
        )?;
        let mut uploads: Vec<Upload> = markers
            .iter()
            .filter_map(|m| {
                let rest = m.path.strip_prefix(UPLOADS_DIR)?.strip_prefix('/')?;
                let (path, id) = rest.rsplit_once('/')?;
                Some(Upload {
                    path: path.to_owned(),
                    id: unhex(id)?,
                })
            })
            .filter(|u| u.path.starts_with(prefix))
            .collect();
        if let Some(listed) = block_on(&self.runtime, self.list_multipart(prefix))? {
            uploads.extend(listed.into_iter().filter(|u| !is_internal(&u.path)));
        }
        uploads.sort();
        uploads.dedup();
        Ok(uploads)
    }
}

/// Blocks on `future` using `runtime`. Called from inside some other tokio runtime (where
/// `block_on` would panic), it blocks on a scoped helper thread instead.
fn block_on<F>(runtime: &tokio::runtime::Runtime, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return runtime.block_on(future);
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| runtime.block_on(future))
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// How a failed attempt should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Worth retrying: 5xx, throttling, timeouts, connection and transport errors.
    Transient,
    /// The object does not exist (HTTP 404).
    NotFound,
    /// Retrying cannot help: 4xx other than throttling, bad request, no credentials.
    Permanent,
}

/// One failed attempt: its classification, a one-line summary and the full error.
struct Failure {
    kind: Kind,
    cause: String,
    source: BoxError,
}

impl Failure {
    fn permanent(cause: &str) -> Self {
        Failure {
            kind: Kind::Permanent,
            cause: cause.to_owned(),
            source: cause.to_owned().into(),
        }
    }

    fn from_sdk<E, R>(error: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
        SdkError<E, R>: HasStatus,
    {
        let status = error.status();
        let (kind, cause) = match &error {
            SdkError::TimeoutError(_) => {
                (Kind::Transient, format!("timed out: {}", innermost(&error)))
            }
            SdkError::DispatchFailure(failure) if failure.is_user() => (
                Kind::Permanent,
                format!("request failed: {}", innermost(&error)),
            ),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => {
                (Kind::Transient, format!("timed out: {}", innermost(&error)))
            }
            SdkError::DispatchFailure(failure) if failure.is_io() => (
                Kind::Transient,
                format!("connection failed: {}", innermost(&error)),
            ),
            // A response cut short (hyper's IncompleteMessage), or throttling, by the SDK's
            // own classification.
            SdkError::DispatchFailure(failure)
                if matches!(
                    failure.as_other(),
                    Some(
                        ErrorKind::TransientError
                            | ErrorKind::ThrottlingError
                            | ErrorKind::ServerError
                    )
                ) =>
            {
                (
                    Kind::Transient,
                    format!("connection failed: {}", innermost(&error)),
                )
            }
            // Failing to resolve credentials or to sign lands here: configuration, not weather.
            SdkError::DispatchFailure(_) => (
                Kind::Permanent,
                format!("request not sent: {}", innermost(&error)),
            ),
            SdkError::ResponseError(_) => (
                Kind::Transient,
                format!("unreadable response: {}", innermost(&error)),
            ),
            SdkError::ServiceError(service) => {
                let err = service.err();
                let code = err.code().unwrap_or("");
                let kind = match status {
                    Some(404) => Kind::NotFound,
                    Some(429) | Some(500..=599) => Kind::Transient,
                    _ if matches!(
                        code,
                        "SlowDown"
                            | "Throttling"
                            | "ThrottlingException"
                            | "RequestTimeout"
                            | "InternalError"
                            | "ServiceUnavailable"
                    ) =>
                    {
                        Kind::Transient
                    }
                    _ => Kind::Permanent,
                };
                let status = status.map_or_else(String::new, |s| format!("HTTP {s} "));
                let message = err.message().unwrap_or("");
                (
                    kind,
                    format!("{status}{code}: {message}")
                        .trim_end_matches([' ', ':'])
                        .to_owned(),
                )
            }
            _ => (
                Kind::Permanent,
                format!("request failed: {}", innermost(&error)),
            ),
        };
        Failure {
            kind,
            cause,
            source: Box::new(error),
        }
    }
}

/// Whether the server answered that it does not implement the operation (HTTP 501).
fn not_implemented<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
    SdkError<E, R>: HasStatus,
{
    error.status() == Some(501)
        || matches!(error, SdkError::ServiceError(s) if s.err().code() == Some("NotImplemented"))
}

/// The HTTP status of an SDK error's raw response, when there is one.
trait HasStatus {
    fn status(&self) -> Option<u16>;
}

impl<E> HasStatus for SdkError<E, aws_sdk_s3::config::http::HttpResponse> {
    fn status(&self) -> Option<u16> {
        self.raw_response().map(|r| r.status().as_u16())
    }
}

/// The message of the deepest cause, which is where "Connection refused" lives.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn random() -> u64 {
    // RandomState is seeded per instance from the OS; enough for spreading retries.
    RandomState::new().build_hasher().finish()
}
