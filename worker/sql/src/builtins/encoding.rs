//! Flink's hash and Base64 functions over STRING: `MD5`, `SHA1`, `SHA224`, `SHA256`,
//! `SHA384`, `SHA512`, `SHA2(s, bits)`, `TO_BASE64` and `FROM_BASE64`. Hashes and encodings
//! are of the string's UTF-8 bytes, as Flink's; digests are written as lower-case hex.
//! (`HEX` is with the other string functions in the parent module.)

use super::{Typing, count, int_arg, str_arg, udf};
use crate::value::{SqlType, Value};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use datafusion_expr::ScalarUDF;
use sha2::Digest as _;
use std::fmt::Write as _;
use std::sync::Arc;

/// Java's `Base64.getDecoder()`: the standard alphabet, the unused bits of the last
/// character ignored (`YR==` is `a`), no whitespace or line breaks; padding is not required,
/// but when there is some it must complete the last group of four (`YQ=` is refused).
const fn java_decoder(padding: DecodePaddingMode) -> GeneralPurpose {
    GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(padding)
            .with_decode_allow_trailing_bits(true),
    )
}
const PADDED: GeneralPurpose = java_decoder(DecodePaddingMode::RequireCanonical);
const UNPADDED: GeneralPurpose = java_decoder(DecodePaddingMode::RequireNone);

/// The arguments are STRING (and, with `bits`, one integer); Flink refuses other types rather
/// than casting them to text.
fn strings(
    args: &[Option<SqlType>],
    n: usize,
    bits: bool,
) -> Result<(Vec<SqlType>, SqlType), String> {
    count(args, n, n)?;
    if !matches!(args[0], None | Some(SqlType::String)) {
        return Err("takes a STRING".into());
    }
    let mut tys = vec![SqlType::String];
    if bits {
        if !args[1].is_none_or(SqlType::is_integer) {
            return Err("takes a STRING and a bit length (224, 256, 384 or 512)".into());
        }
        tys.push(SqlType::BigInt);
    }
    Ok((tys, SqlType::String))
}

const ONE_STRING: Typing = |a| strings(a, 1, false);

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(out, "{b:02x}").expect("writing to a String");
    }
    out
}

/// The lower-case hex digest of `s`'s UTF-8 bytes by the SHA-2 function of `bits` bits
/// (None: not 224, 256, 384 or 512).
fn sha2_hex(s: &str, bits: i64) -> Option<String> {
    let b = s.as_bytes();
    Some(match bits {
        224 => hex(&sha2::Sha224::digest(b)),
        256 => hex(&sha2::Sha256::digest(b)),
        384 => hex(&sha2::Sha384::digest(b)),
        512 => hex(&sha2::Sha512::digest(b)),
        _ => return None,
    })
}

fn hash_with(a: &[Value], f: fn(&[u8]) -> String) -> Result<Value, String> {
    Ok(str_arg(&a[0]).map_or(Value::Null, |s| Value::Str(f(s.as_bytes()))))
}

fn eval_sha2(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(bits)) = (str_arg(&a[0]), int_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    // Flink looks up the digest "SHA-<bits>" at runtime and fails the job without one.
    sha2_hex(s, bits)
        .map(Value::Str)
        .ok_or_else(|| format!("{bits} is not a SHA-2 bit length (224, 256, 384 or 512)"))
}

/// Flink decodes with Java's Base64 decoder and reads the bytes as UTF-8 (an invalid sequence
/// becomes U+FFFD); text that is not Base64 fails the job, as it does in Flink.
fn eval_from_base64(a: &[Value]) -> Result<Value, String> {
    let Some(s) = str_arg(&a[0]) else {
        return Ok(Value::Null);
    };
    let decoder = if s.ends_with('=') { &PADDED } else { &UNPADDED };
    let bytes = decoder
        .decode(s)
        .map_err(|e| format!("'{s}' is not Base64: {e}"))?;
    Ok(Value::Str(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The functions of this module, by their SQL names.
pub(super) fn functions() -> Vec<Arc<ScalarUDF>> {
    macro_rules! digest {
        ($name:literal, $usage:literal, $hash:ty) => {
            udf($name, $usage, ONE_STRING, |a| {
                hash_with(a, |b| hex(&<$hash>::digest(b)))
            })
        };
    }
    vec![
        digest!("md5", "MD5(s)", md5::Md5),
        digest!("sha1", "SHA1(s)", sha1::Sha1),
        digest!("sha224", "SHA224(s)", sha2::Sha224),
        digest!("sha256", "SHA256(s)", sha2::Sha256),
        digest!("sha384", "SHA384(s)", sha2::Sha384),
        digest!("sha512", "SHA512(s)", sha2::Sha512),
        udf("sha2", "SHA2(s, bits)", |a| strings(a, 2, true), eval_sha2),
        udf("to_base64", "TO_BASE64(s)", ONE_STRING, |a| {
            Ok(str_arg(&a[0]).map_or(Value::Null, |s| {
                Value::Str(base64::engine::general_purpose::STANDARD.encode(s))
            }))
        }),
        udf(
            "from_base64",
            "FROM_BASE64(s)",
            ONE_STRING,
            eval_from_base64,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_lower_case_hex_of_the_utf8_bytes() {
        assert_eq!(
            hex(&md5::Md5::digest(b"abc")),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            sha2_hex("", 256).as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(sha2_hex("abc", 128), None);
    }

    #[test]
    fn base64_is_decoded_as_java_does() {
        let dec = |s: &str| eval_from_base64(&[Value::Str(s.into())]);
        assert_eq!(dec("aGVsbG8="), Ok(Value::Str("hello".into())));
        assert_eq!(dec("aGVsbG8"), Ok(Value::Str("hello".into())));
        assert_eq!(dec("YR=="), Ok(Value::Str("a".into())));
        assert!(dec("YQ==YQ==").is_err());
        assert!(dec("YQ=").is_err());
        assert_eq!(dec("/w=="), Ok(Value::Str("\u{fffd}".into())));
        let err = dec("not base64!").unwrap_err();
        assert!(err.contains("'not base64!' is not Base64"), "{err}");
    }
}
