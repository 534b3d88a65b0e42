//! Object paths: relative, `/`-separated keys such as `job-1/chk-3/_metadata`. Both stores
//! validate them the same way so a key that works on `file://` works on `s3://` and back.

use crate::error::{Result, StorageError};

/// Prefix of the temporary files the file store writes before renaming them into place.
/// Keys whose segments start with it are rejected so a listing can skip them safely.
pub(crate) const TEMP_PREFIX: &str = ".weir-tmp-";

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
