//! Object paths: relative, `/`-separated keys such as `job-1/chk-3/_metadata`. Both stores
//! validate them the same way so a key that works on `file://` works on `s3://` and back.

use crate::error::{Result, StorageError};

/// Prefix of the temporary files the file store writes before renaming them into place.
/// Keys whose segments start with it are rejected so a listing can skip them safely.
pub(crate) const TEMP_PREFIX: &str = ".weir-tmp-";

/// Directory (below a store's root) of the stores' multipart-upload bookkeeping. Its name
/// starts with [`TEMP_PREFIX`], so no valid key can collide with it and listings skip it.
pub(crate) const UPLOADS_DIR: &str = ".weir-tmp-uploads";

/// Whether a key belongs to a store's own bookkeeping (a segment starts with [`TEMP_PREFIX`]):
/// never listed, never deleted by prefix.
pub(crate) fn is_internal(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment.starts_with(TEMP_PREFIX))
}

/// Lower-case hex of `bytes`: upload ids (any characters) as a key segment.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The inverse of [`hex`]; `None` for anything [`hex`] did not produce.
pub(crate) fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

/// Checks an object path: non-empty, relative, no empty, `.` or `..` segments, no backslashes.
pub(crate) fn validate_key(path: &str) -> Result<()> {
    if path.is_empty() {
        return Err(invalid(path, "it is empty"));
    }
    if path.ends_with('/') {
        return Err(invalid(
            path,
            "it ends with '/' (that names a directory, not an object)",
        ));
    }
    validate_prefix(path)
}

/// Checks a listing or deletion prefix. The empty prefix means "everything"; otherwise the same
/// rules as for keys apply, except that a trailing `/` is allowed and the last segment may be
/// partial (`job-1/chk-` matches `job-1/chk-1/...` and `job-1/chk-2/...`).
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    if prefix.starts_with('/') {
        return Err(invalid(prefix, "it must be relative (no leading '/')"));
    }
    if prefix.contains('\\') {
        return Err(invalid(prefix, "it contains '\\'; use '/' as separator"));
    }
    if prefix.contains('\0') {
        return Err(invalid(prefix, "it contains a NUL byte"));
    }
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    for segment in trimmed.split('/') {
        match segment {
            "" => return Err(invalid(prefix, "it contains an empty segment ('//')")),
            "." | ".." => return Err(invalid(prefix, "'.' and '..' segments are not allowed")),
            s if s.starts_with(TEMP_PREFIX) => {
                return Err(invalid(
                    prefix,
                    "segments starting with '.weir-tmp-' are reserved",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn invalid(path: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidPath {
        path: path.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_style_keys_are_accepted() {
        validate_key("job-1/chk-3/_metadata").unwrap();
        validate_key("a").unwrap();
        validate_prefix("").unwrap();
        validate_prefix("job-1/").unwrap();
        validate_prefix("job-1/chk-").unwrap();
    }

    #[test]
    fn upload_ids_survive_hex_encoding_and_bookkeeping_keys_are_recognised() {
        for id in ["2~abc/def+=", "0f3c9a", ""] {
            assert_eq!(unhex(&hex(id.as_bytes())).as_deref(), Some(id));
        }
        assert_eq!(unhex("zz"), None);
        assert!(is_internal(".weir-tmp-uploads/out/part-1/00"));
        assert!(!is_internal("out/part-1"));
    }

    #[test]
    fn escaping_or_ambiguous_keys_are_rejected() {
        for bad in [
            "",
            "/abs",
            "a//b",
            "a/../b",
            "./a",
            "a/",
            "a\\b",
            "x/.weir-tmp-1",
        ] {
            let err = validate_key(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("'{bad}'")), "{err}");
        }
    }
}
