//! A minimal S3 client for what the operator does in object storage: list the objects under a
//! prefix and delete them. Requests are signed with AWS Signature Version 4. Only `http://`
//! endpoints are reachable (S3-compatible servers inside the cluster or on the machine); an
//! `https://` or default AWS endpoint fails with [`S3Error::Tls`].

use std::fmt::Write;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use ring::{digest, hmac};

/// Why an S3 call failed.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("{uri} is not an s3://bucket/prefix URI")]
    Uri { uri: String },
    #[error(
        "S3 endpoint {endpoint} needs TLS, which the operator does not speak yet; use an http:// endpoint"
    )]
    Tls { endpoint: String },
    #[error("S3 request to {url} failed")]
    Request {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("S3 answered {status} for {url}: {body}")]
    Status {
        url: String,
        status: StatusCode,
        body: String,
    },
}

/// Where and as whom to reach S3.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// `http://host:port`; `None` means AWS, which needs TLS.
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Lists and deletes objects.
#[derive(Clone, Debug)]
pub struct S3Client {
    http: Client<HttpConnector, Full<Bytes>>,
    config: S3Config,
}

/// Splits `s3://bucket/prefix` into bucket and prefix.
pub fn split_uri(uri: &str) -> Result<(String, String), S3Error> {
    let rest = uri.strip_prefix("s3://").ok_or_else(|| S3Error::Uri {
        uri: uri.to_string(),
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(S3Error::Uri {
            uri: uri.to_string(),
        });
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

impl S3Client {
    pub fn new(config: S3Config) -> Self {
        S3Client {
            http: Client::builder(TokioExecutor::new()).build_http(),
            config,
        }
    }

    /// Where and as whom this client talks to S3.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// Keys of all objects under `prefix` in `bucket`.
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("list-type".to_string(), "2".to_string()),
                ("prefix".to_string(), prefix.to_string()),
            ];
            if let Some(token) = &token {
                query.push(("continuation-token".to_string(), token.clone()));
            }
            let body = self.send(Method::GET, bucket, "", &query).await?;
            keys.extend(xml_values(&body, "Key"));
            let truncated =
                xml_values(&body, "IsTruncated").first().map(String::as_str) == Some("true");
            token = xml_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            if !truncated || token.is_none() {
                return Ok(keys);
            }
        }
    }

    /// Deletes every object under `s3://bucket/prefix`; returns how many there were.
    /// Deleting an empty prefix succeeds, so a repeated deletion is harmless.
    pub async fn delete_prefix(&self, uri: &str) -> Result<usize, S3Error> {
        let (bucket, prefix) = split_uri(uri)?;
        // A directory-like prefix must not also match its siblings (chk-1 vs chk-10).
        let prefix = if prefix.is_empty() || prefix.ends_with('/') {
            prefix
        } else {
            format!("{prefix}/")
        };
        let keys = self.list(&bucket, &prefix).await?;
        for key in &keys {
            self.send(Method::DELETE, &bucket, key, &[]).await?;
        }
        Ok(keys.len())
    }

    async fn send(
        &self,
        method: Method,
        bucket: &str,
        key: &str,
        query: &[(String, String)],
    ) -> Result<String, S3Error> {
        let endpoint = match &self.config.endpoint {
            Some(e) if e.starts_with("http://") => e.trim_end_matches('/').to_string(),
            other => {
                return Err(S3Error::Tls {
                    endpoint: other
                        .clone()
                        .unwrap_or_else(|| format!("s3.{}.amazonaws.com", self.config.region)),
                });
            }
        };
        let authority = endpoint.trim_start_matches("http://");
        let (host, path) = if self.config.path_style {
            (authority.to_string(), format!("/{bucket}/{key}"))
        } else {
            (format!("{bucket}.{authority}"), format!("/{key}"))
        };
        let path = uri_encode(&path, false);
        let mut sorted: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
            .collect();
        sorted.sort();
        let query_string = sorted
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let url = if query_string.is_empty() {
            format!("http://{host}{path}")
        } else {
            format!("http://{host}{path}?{query_string}")
        };
        let headers = sign(
            &self.config,
            method.as_str(),
            &host,
            &path,
            &query_string,
            Timestamp::now(),
        );
        let mut request = Request::builder().method(method).uri(&url);
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(Bytes::new()))
            .map_err(|e| S3Error::Request {
                url: url.clone(),
                source: Box::new(e),
            })?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| S3Error::Request {
                url: url.clone(),
                source: Box::new(e),
            })?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| S3Error::Request {
                url: url.clone(),
                source: Box::new(e),
            })?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        // Deleting a missing object is a success in S3 (204); 404 on a missing key is too.
        if status.is_success() || (status == StatusCode::NOT_FOUND && !key.is_empty()) {
            Ok(body)
        } else {
            Err(S3Error::Status { url, status, body })
        }
    }
}

/// The SigV4 headers (`host`, `x-amz-content-sha256`, `x-amz-date`, `authorization`) for a
/// request with an empty body. `path` and `query` are already canonically encoded.
pub fn sign(
    config: &S3Config,
    method: &str,
    host: &str,
    path: &str,
    query: &str,
    now: Timestamp,
) -> Vec<(String, String)> {
    let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
    let date = &amz_date[..8];
    let payload_hash = hex(digest::digest(&digest::SHA256, b"").as_ref());
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical_request = format!(
        "{method}\n{path}\n{query}\nhost:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\n\n{signed_headers}\n{payload_hash}"
    );
    let scope = format!("{date}/{}/s3/aws4_request", config.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(digest::digest(&digest::SHA256, canonical_request.as_bytes()).as_ref())
    );
    let mut key = format!("AWS4{}", config.secret_access_key).into_bytes();
    for part in [date, config.region.as_str(), "s3", "aws4_request"] {
        key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), part.as_bytes())
            .as_ref()
            .to_vec();
    }
    let signature = hex(hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, &key),
        string_to_sign.as_bytes(),
    )
    .as_ref());
    vec![
        ("host".to_string(), host.to_string()),
        ("x-amz-content-sha256".to_string(), payload_hash),
        ("x-amz-date".to_string(), amz_date),
        (
            "authorization".to_string(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                config.access_key_id
            ),
        ),
    ]
}

/// SigV4 URI encoding: everything but unreserved characters, and `/` too when `slash`.
fn uri_encode(text: &str, slash: bool) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b'/' if !slash => out.push('/'),
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// Text of every `<tag>…</tag>` element, with XML entities decoded.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        values.push(
            rest[..end]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        );
        rest = &rest[end + close.len()..];
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_the_aws_documentation_example() {
        // "GET Object" example of the AWS SigV4 documentation for S3, with an empty-body
        // variant: the same key derivation, canonical request and string-to-sign steps.
        let config = S3Config {
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        };
        let now: Timestamp = "2013-05-24T00:00:00Z".parse().unwrap();
        let headers = sign(
            &config,
            "GET",
            "examplebucket.s3.amazonaws.com",
            "/",
            "max-keys=2&prefix=J",
            now,
        );
        let auth = &headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ));
        // The documented "GET Bucket (List Objects)" signature for these exact inputs.
        assert!(
            auth.ends_with("34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
            "{auth}"
        );
    }

    #[test]
    fn uris_split_into_bucket_and_prefix() {
        assert_eq!(
            split_uri("s3://state/orders/cp").unwrap(),
            ("state".into(), "orders/cp".into())
        );
        assert_eq!(
            split_uri("s3://state").unwrap(),
            ("state".into(), "".into())
        );
        assert!(split_uri("file:///x").is_err());
    }

    #[test]
    fn list_results_are_read_from_the_xml() {
        let xml = "<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a&amp;b/_metadata</Key></Contents>\
                   <Contents><Key>c</Key></Contents><NextContinuationToken>t1</NextContinuationToken></ListBucketResult>";
        assert_eq!(xml_values(xml, "Key"), ["a&b/_metadata", "c"]);
        assert_eq!(xml_values(xml, "NextContinuationToken"), ["t1"]);
    }

    #[test]
    fn keys_are_encoded_but_keep_their_slashes() {
        assert_eq!(
            uri_encode("/b/savepoint 1/x+y", false),
            "/b/savepoint%201/x%2By"
        );
        assert_eq!(uri_encode("a/b", true), "a%2Fb");
    }
}
