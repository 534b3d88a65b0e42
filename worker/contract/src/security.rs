//! Who may talk to a Weir process, and how it proves it: the bearer token of the REST API and
//! the token of the RPC handshake (each read from a file, so a Kubernetes Secret can be mounted
//! there; never logged), and TLS for the REST API (PEM certificate, key and CA files loaded into
//! rustls configurations with the `ring` provider). Servers and clients resolve the
//! `security.*` keys here, so both refuse the same inconsistent settings with the same
//! messages.

use crate::options::{self, ConfigOption};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the security settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file named by a key cannot be read.
    #[error("cannot read the {what} '{}' ({key})", path.display())]
    Read {
        /// What the file should hold.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The key naming it.
        key: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A token file holds nothing but whitespace.
    #[error("the token file '{}' ({key}) is empty: put the shared secret in it", path.display())]
    EmptyToken {
        /// The path.
        path: PathBuf,
        /// The key naming it.
        key: &'static str,
    },
    /// A boolean key holds something else.
    #[error("'{key}' must be true or false, got '{value}'")]
    Bool {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// TLS is on but a file it needs is not named.
    #[error("'{enabled}' is true but '{missing}' is not set: {why}")]
    Missing {
        /// The switch.
        enabled: &'static str,
        /// The key that must be set too.
        missing: &'static str,
        /// Who needs it.
        why: &'static str,
    },
    /// A TLS file is named while TLS is off: a setting that would silently do nothing.
    #[error("'{key}' is set but '{enabled}' is not true: set '{enabled}: true', or remove '{key}'")]
    NotEnabled {
        /// The key that is set.
        key: &'static str,
        /// The switch that is off.
        enabled: &'static str,
    },
    /// A PEM file holds no usable item of the expected kind.
    #[error("'{}' ({key}) holds no PEM {what}{}", path.display(), detail.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    Pem {
        /// The path.
        path: PathBuf,
        /// The key naming it.
        key: &'static str,
        /// What was expected (`certificate`, `private key`).
        what: &'static str,
        /// The parser's complaint, if any.
        detail: Option<String>,
    },
    /// rustls refused the material (a key that does not match the certificate, a CA that is
    /// not a certificate, …).
    #[cfg(feature = "tls")]
    #[error("cannot use the TLS files of '{key}' ('{}'): {source}", path.display())]
    Tls {
        /// The key of the file rustls refused.
        key: &'static str,
        /// Its path.
        path: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
}

/// A shared secret: the REST API's bearer token or the RPC handshake's key. Its `Debug` does
/// not show it, so it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its text (surrounding whitespace, such as a file's final newline, is not
    /// part of it); `None` when nothing is left.
    pub fn new(secret: &str) -> Option<Token> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Token(secret.into()))
    }

    /// Reads the token from `path`, which `key` names.
    pub fn read(path: &Path, key: &'static str) -> Result<Token, SecurityError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
            what: "token file",
            path: path.to_path_buf(),
            key,
            source,
        })?;
        Token::new(&text).ok_or_else(|| SecurityError::EmptyToken {
            path: path.to_path_buf(),
            key,
        })
    }

    /// The secret itself, for a client to send.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token. The time taken does not depend on where the two
    /// differ, so a client cannot guess the token byte by byte from response times.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        // The length is not secret enough to hide (it is visible on the wire); the bytes are.
        if expected.len() != presented.len() {
            return false;
        }
        expected
            .iter()
            .zip(presented)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn matches_bearer(&self, header: Option<&[u8]>) -> bool {
        header
            .and_then(|h| h.strip_prefix(b"Bearer "))
            .is_some_and(|presented| self.matches(presented))
    }

    /// HMAC-SHA256 of `message` under this token: the RPC handshake proves knowledge of the
    /// token this way, without sending it.
    #[cfg(feature = "tls")]
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_bytes());
        ring::hmac::sign(&key, message).as_ref().to_vec()
    }

    /// Whether `tag` is [`Token::sign`] of `message` (compared in constant time).
    #[cfg(feature = "tls")]
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.0.as_bytes());
        ring::hmac::verify(&key, message, tag).is_ok()
    }
}

/// 32 random bytes from the operating system: a handshake's challenge.
#[cfg(feature = "tls")]
pub fn nonce() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the OS random source works");
    bytes
}

/// The PEM files of one TLS setup, as the keys name them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain the server presents.
    pub cert: Option<PathBuf>,
    /// The server's private key.
    pub key: Option<PathBuf>,
    /// The CA certificates a client trusts.
    pub ca: Option<PathBuf>,
}

/// The REST API's security settings (`security.rest.token-file`, `security.ssl.rest.*`), as
/// both the server and its clients read them.
#[derive(Debug, Clone, Default)]
pub struct RestSecurity {
    /// The bearer token every request but the probes' must carry.
    pub token: Option<Token>,
    /// TLS files, when `security.ssl.rest.enabled` is true.
    pub tls: Option<TlsFiles>,
}

fn path_of(get: &impl Fn(ConfigOption) -> String, o: ConfigOption) -> Option<PathBuf> {
    let v = get(o);
    let v = v.trim();
    (!v.is_empty()).then(|| PathBuf::from(v))
}

fn bool_of(get: &impl Fn(ConfigOption) -> String, o: ConfigOption) -> Result<bool, SecurityError> {
    let v = get(o);
    match v.trim() {
        "" => Ok(o.default == "true"),
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(SecurityError::Bool {
            key: o.key,
            value: other.to_string(),
        }),
    }
}

fn token_of(
    get: &impl Fn(ConfigOption) -> String,
    o: ConfigOption,
) -> Result<Option<Token>, SecurityError> {
    path_of(get, o)
        .map(|path| Token::read(&path, o.key))
        .transpose()
}

impl RestSecurity {
    /// Resolves the keys through `get` (a key's value, empty when unset): reads the token
    /// file, and refuses TLS files named while TLS is off.
    pub fn from_options(get: impl Fn(ConfigOption) -> String) -> Result<Self, SecurityError> {
        let token = token_of(&get, options::REST_TOKEN_FILE)?;
        let files = TlsFiles {
            cert: path_of(&get, options::SSL_REST_CERT_FILE),
            key: path_of(&get, options::SSL_REST_KEY_FILE),
            ca: path_of(&get, options::SSL_REST_CA_FILE),
        };
        let tls = if bool_of(&get, options::SSL_REST_ENABLED)? {
            Some(files)
        } else {
            let named = [
                (&files.cert, options::SSL_REST_CERT_FILE),
                (&files.key, options::SSL_REST_KEY_FILE),
                (&files.ca, options::SSL_REST_CA_FILE),
            ];
            if let Some((_, o)) = named.iter().find(|(p, _)| p.is_some()) {
                return Err(SecurityError::NotEnabled {
                    key: o.key,
                    enabled: options::SSL_REST_ENABLED.key,
                });
            }
            None
        };
        Ok(RestSecurity { token, tls })
    }

    /// The scheme of the REST API's URLs: `https` with TLS.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The server's TLS configuration (certificate and key loaded and checked), `None`
    /// without TLS.
    #[cfg(feature = "tls")]
    pub fn server_tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, SecurityError> {
        let Some(files) = &self.tls else {
            return Ok(None);
        };
        let missing = |o: ConfigOption| SecurityError::Missing {
            enabled: options::SSL_REST_ENABLED.key,
            missing: o.key,
            why: "the REST server needs its certificate and private key (PEM)",
        };
        let cert = files
            .cert
            .as_deref()
            .ok_or_else(|| missing(options::SSL_REST_CERT_FILE))?;
        let key = files
            .key
            .as_deref()
            .ok_or_else(|| missing(options::SSL_REST_KEY_FILE))?;
        tls::server_config(
            (cert, options::SSL_REST_CERT_FILE.key),
            (key, options::SSL_REST_KEY_FILE.key),
        )
        .map(Some)
    }

    /// A client's TLS configuration (trusting the CA file), `None` without TLS.
    #[cfg(feature = "tls")]
    pub fn client_tls(&self) -> Result<Option<Arc<rustls::ClientConfig>>, SecurityError> {
        let Some(files) = &self.tls else {
            return Ok(None);
        };
        let ca = files
            .ca
            .as_deref()
            .ok_or_else(|| SecurityError::Missing {
                enabled: options::SSL_REST_ENABLED.key,
                missing: options::SSL_REST_CA_FILE.key,
                why: "a REST client needs the CA certificate (PEM) that signed the server's certificate",
            })?;
        tls::client_config((ca, options::SSL_REST_CA_FILE.key)).map(Some)
    }
}

/// The RPC's TLS (`security.ssl.internal.*`): this process's certificate and key and the
/// CA its peers must chain to, as a server configuration requiring client certificates and a
/// client configuration presenting one; `None` when TLS is off. Every file is read here.
#[cfg(feature = "tls")]
pub fn internal_tls(
    get: impl Fn(ConfigOption) -> String,
) -> Result<Option<tls::Mutual>, SecurityError> {
    let keys = [
        options::SSL_INTERNAL_CERT_FILE,
        options::SSL_INTERNAL_KEY_FILE,
        options::SSL_INTERNAL_CA_FILE,
    ];
    let enabled = options::SSL_INTERNAL_ENABLED;
    let [cert, key, ca] = keys.map(|o| path_of(&get, o));
    if !bool_of(&get, enabled)? {
        if let Some((_, o)) = [&cert, &key, &ca]
            .into_iter()
            .zip(keys)
            .find(|(p, _)| p.is_some())
        {
            return Err(SecurityError::NotEnabled {
                key: o.key,
                enabled: enabled.key,
            });
        }
        return Ok(None);
    }
    let need = |path: Option<PathBuf>, o: ConfigOption| {
        path.ok_or(SecurityError::Missing {
            enabled: enabled.key,
            missing: o.key,
            why: "each JobManager and TaskManager needs its certificate, its key and the CA (PEM)",
        })
    };
    let cert = need(cert, keys[0])?;
    let key = need(key, keys[1])?;
    let ca = need(ca, keys[2])?;
    tls::mutual(
        (&cert, keys[0].key),
        (&key, keys[1].key),
        (&ca, keys[2].key),
    )
    .map(Some)
}

/// The token of the RPC handshake (`security.internal.token-file`), `None` when unset.
pub fn internal_token(
    get: impl Fn(ConfigOption) -> String,
) -> Result<Option<Token>, SecurityError> {
    token_of(&get, options::INTERNAL_TOKEN_FILE)
}

/// Loading PEM files into rustls configurations (provider: `ring`).
#[cfg(feature = "tls")]
pub mod tls {
    use super::SecurityError;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::path::Path;
    use std::sync::Arc;

    fn provider() -> Arc<rustls::crypto::CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    fn read(path: &Path, key: &'static str, what: &'static str) -> Result<Vec<u8>, SecurityError> {
        std::fs::read(path).map_err(|source| SecurityError::Read {
            what,
            path: path.to_path_buf(),
            key,
            source,
        })
    }

    /// The certificates of a PEM file (`file` is its path and the key naming it).
    pub fn certificates(
        (path, key): (&Path, &'static str),
    ) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
        let pem = read(path, key, "certificate file")?;
        let no_pem = |detail: Option<String>| SecurityError::Pem {
            path: path.to_path_buf(),
            key,
            what: "certificate",
            detail,
        };
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| no_pem(Some(e.to_string())))?;
        if certs.is_empty() {
            return Err(no_pem(None));
        }
        Ok(certs)
    }

    /// The private key of a PEM file.
    pub fn private_key(
        (path, key): (&Path, &'static str),
    ) -> Result<PrivateKeyDer<'static>, SecurityError> {
        let pem = read(path, key, "private key file")?;
        PrivateKeyDer::from_pem_slice(&pem).map_err(|e| SecurityError::Pem {
            path: path.to_path_buf(),
            key,
            what: "private key",
            detail: Some(e.to_string()),
        })
    }

    /// A server presenting the certificate chain `cert` with private key `key`.
    pub fn server_config(
        cert: (&Path, &'static str),
        key: (&Path, &'static str),
    ) -> Result<Arc<rustls::ServerConfig>, SecurityError> {
        let chain = certificates(cert)?;
        let private = private_key(key)?;
        let refused = |source| SecurityError::Tls {
            key: key.1,
            path: key.0.to_path_buf(),
            source,
        };
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(refused)?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(refused)?;
        Ok(Arc::new(config))
    }

    /// A client trusting the CA certificates of `ca` (and nothing else).
    pub fn client_config(
        ca: (&Path, &'static str),
    ) -> Result<Arc<rustls::ClientConfig>, SecurityError> {
        trusting(certificates(ca)?).map_err(|source| SecurityError::Tls {
            key: ca.1,
            path: ca.0.to_path_buf(),
            source,
        })
    }

    /// The server and the client configuration of one process in a mutually authenticated
    /// exchange.
    pub type Mutual = (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>);

    /// Both ends of a mutually authenticated connection: a server presenting `cert` and
    /// requiring a client certificate from `ca`, and a client presenting `cert` and trusting
    /// only `ca`.
    pub fn mutual(
        cert: (&Path, &'static str),
        key: (&Path, &'static str),
        ca: (&Path, &'static str),
    ) -> Result<Mutual, SecurityError> {
        let chain = certificates(cert)?;
        let private = private_key(key)?;
        fn refused((path, key): (&Path, &'static str)) -> impl Fn(rustls::Error) -> SecurityError {
            let path = path.to_path_buf();
            move |source| SecurityError::Tls {
                key,
                path: path.clone(),
                source,
            }
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in certificates(ca)? {
            roots.add(c).map_err(refused(ca))?;
        }
        let roots = Arc::new(roots);
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .map_err(|e| SecurityError::Tls {
                    key: ca.1,
                    path: ca.0.to_path_buf(),
                    source: rustls::Error::General(e.to_string()),
                })?;
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(refused(key))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), private.clone_key())
            .map_err(refused(key))?;
        let client = client_builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, private)
            .map_err(refused(key))?;
        Ok((Arc::new(server), Arc::new(client)))
    }

    /// A client trusting the CA certificates of `pem` (read from elsewhere than a file, such
    /// as a Kubernetes Secret); the error says what is wrong with them.
    pub fn client_config_from_pem(pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err("holds no PEM certificate".into());
        }
        trusting(certs).map_err(|e| format!("not a usable CA certificate: {e}"))
    }

    fn trusting(
        certs: Vec<CertificateDer<'static>>,
    ) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert)?;
        }
        Ok(Arc::new(
            client_builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        ))
    }

    /// A client that trusts no CA: it can speak plain HTTP only (an `https` URL fails to
    /// verify), which is what a client without a configured CA should do.
    pub fn untrusting_client() -> Arc<rustls::ClientConfig> {
        Arc::new(
            client_builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        )
    }

    fn client_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
        rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn getter(pairs: &[(ConfigOption, &str)]) -> impl Fn(ConfigOption) -> String {
        let pairs: Vec<(&'static str, String)> =
            pairs.iter().map(|(o, v)| (o.key, v.to_string())).collect();
        move |o| {
            pairs
                .iter()
                .find(|(k, _)| *k == o.key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        }
    }

    #[test]
    fn tokens_compare_whole_and_never_show_in_debug() {
        let t = Token::new("s3cret\n").unwrap();
        assert!(t.matches(b"s3cret"));
        assert!(!t.matches(b"s3creT"));
        assert!(!t.matches(b"s3cre"));
        assert!(t.matches_bearer(Some(b"Bearer s3cret")));
        assert!(!t.matches_bearer(Some(b"Basic s3cret")));
        assert!(!t.matches_bearer(None));
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
        assert!(Token::new(" \n").is_none());
    }

    #[test]
    fn unreadable_or_empty_token_files_are_refused_naming_path_and_key() {
        let dir = std::env::temp_dir().join(format!("weir-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let missing = dir.join("missing");
        for (path, expected) in [
            (&empty, "is empty"),
            (&missing, "cannot read the token file"),
        ] {
            let p = path.display().to_string();
            let e = RestSecurity::from_options(getter(&[(options::REST_TOKEN_FILE, &p)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected) && e.contains(&p), "{e}");
            assert!(e.contains(options::REST_TOKEN_FILE.key), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tls_files_without_tls_on_and_tls_on_without_a_certificate_are_refused() {
        let e = RestSecurity::from_options(getter(&[(options::SSL_REST_CERT_FILE, "/c.pem")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "'security.ssl.rest.cert-file' is set but 'security.ssl.rest.enabled' is not true: set 'security.ssl.rest.enabled: true', or remove 'security.ssl.rest.cert-file'"
        );
        let e = RestSecurity::from_options(getter(&[(options::SSL_REST_ENABLED, "yes")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be true or false, got 'yes'"), "{e}");
        let on =
            RestSecurity::from_options(getter(&[(options::SSL_REST_ENABLED, "true")])).unwrap();
        assert_eq!(on.scheme(), "https");
        let e = on.server_tls().unwrap_err().to_string();
        assert!(
            e.contains("'security.ssl.rest.cert-file' is not set"),
            "{e}"
        );
        let e = on.client_tls().unwrap_err().to_string();
        assert!(e.contains("'security.ssl.rest.ca-file' is not set"), "{e}");
    }

    #[test]
    fn rpc_tls_without_its_files_or_files_without_rpc_tls_are_refused() {
        let e = internal_tls(getter(&[(options::SSL_INTERNAL_ENABLED, "true")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'security.ssl.internal.cert-file' is not set"),
            "{e}"
        );
        let e = internal_tls(getter(&[(options::SSL_INTERNAL_CA_FILE, "/ca.pem")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'security.ssl.internal.ca-file' is set but 'security.ssl.internal.enabled' is not true"),
            "{e}"
        );
        assert!(internal_tls(getter(&[])).unwrap().is_none());
        let e = internal_tls(getter(&[
            (options::SSL_INTERNAL_ENABLED, "true"),
            (options::SSL_INTERNAL_CERT_FILE, "/nonexistent/tls.crt"),
            (options::SSL_INTERNAL_KEY_FILE, "/nonexistent/tls.key"),
            (options::SSL_INTERNAL_CA_FILE, "/nonexistent/ca.crt"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("cannot read the certificate file '/nonexistent/tls.crt' (security.ssl.internal.cert-file)"),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_file_without_pem_is_refused_naming_it() {
        let path = std::env::temp_dir().join(format!("weir-notpem-{}", std::process::id()));
        std::fs::write(&path, "not a certificate").unwrap();
        let e = tls::client_config((&path, "security.ssl.rest.ca-file"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("holds no PEM certificate") && e.contains(&path.display().to_string()),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn handshake_tags_verify_only_under_the_same_token() {
        let (a, b) = (Token::new("one").unwrap(), Token::new("two").unwrap());
        let tag = a.sign(b"nonce");
        assert!(a.verify(b"nonce", &tag));
        assert!(!b.verify(b"nonce", &tag));
        assert!(!a.verify(b"other", &tag));
    }
}

/// Test certificates: a throwaway CA and a server certificate it signed, made with the
/// `openssl` command (feature `test-support`).
#[cfg(feature = "test-support")]
pub mod testing {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// PEM files in a directory: `ca.crt`, and `tls.crt`/`tls.key` of a server (the names of
    /// a Kubernetes TLS Secret's keys).
    #[derive(Debug, Clone)]
    pub struct TestCertificates {
        /// The CA certificate clients trust.
        pub ca: PathBuf,
        /// The server's certificate, signed by the CA.
        pub cert: PathBuf,
        /// The server's private key.
        pub key: PathBuf,
    }

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run openssl ({e}): install it (Debian/Ubuntu: apt-get install openssl)"
                )
            });
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    impl TestCertificates {
        /// A new CA in `dir` and a server certificate valid for `names` (DNS names or IP
        /// addresses), for two days.
        pub fn generate(dir: &Path, names: &[&str]) -> TestCertificates {
            let p256 = [
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ];
            let ca = [
                &["req", "-x509"][..],
                &p256,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.crt",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=weir test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat();
            openssl(dir, &ca);
            let request = [
                &["req"][..],
                &p256,
                &[
                    "-keyout",
                    "tls.key",
                    "-out",
                    "tls.csr",
                    "-subj",
                    "/CN=weir test server",
                ],
            ]
            .concat();
            openssl(dir, &request);
            let san: Vec<String> = names
                .iter()
                .map(|n| match n.parse::<std::net::IpAddr>() {
                    Ok(_) => format!("IP:{n}"),
                    Err(_) => format!("DNS:{n}"),
                })
                .collect();
            std::fs::write(
                dir.join("tls.ext"),
                format!(
                    "subjectAltName={}\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
                    san.join(",")
                ),
            )
            .unwrap();
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    "tls.csr",
                    "-CA",
                    "ca.crt",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-out",
                    "tls.crt",
                    "-days",
                    "2",
                    "-extfile",
                    "tls.ext",
                ],
            );
            TestCertificates {
                ca: dir.join("ca.crt"),
                cert: dir.join("tls.crt"),
                key: dir.join("tls.key"),
            }
        }
    }
}
