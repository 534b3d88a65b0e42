//! Flink's hash and Base64 functions over STRING: `MD5`, `SHA1`, `SHA224`, `SHA256`,
//! `SHA384`, `SHA512`, `SHA2(s, bits)`, `TO_BASE64` and `FROM_BASE64`, and the functions
//! between STRING and BYTES: `UNHEX`, `ENCODE(s, charset)`, `DECODE(bytes, charset)`. Hashes
//! and encodings are of a string's UTF-8 bytes (or of BYTES), as Flink's; digests are written
//! as lower-case hex.
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

/// Bytes as Base64 text (the standard alphabet, padded), as Java's `Base64.getEncoder()`
/// writes them and Flink's json format writes BYTES.
pub(crate) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Base64 text as Java's `Base64.getDecoder()` reads it (padding optional); None where it is
/// not Base64.
pub(crate) fn from_base64(text: &str) -> Option<Vec<u8>> {
    let engine = if text.ends_with('=') {
        &PADDED
    } else {
        &UNPADDED
    };
    engine.decode(text).ok()
}

/// Flink's UNHEX: pairs of hex digits (either case) to bytes, NULL for any other text. Text
/// of odd length has a leading zero byte, its first digit checked but not used, as Flink's
/// `EncodingUtils.unhex` does.
fn unhex(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let digit = |c: u8| char::from(c).to_digit(16).map(|d| d as u8);
    let mut out = vec![0u8; b.len().div_ceil(2)];
    let odd = b.len() % 2;
    if odd == 1 {
        digit(b[0])?;
    }
    for (o, pair) in out[odd..].iter_mut().zip(b[odd..].chunks(2)) {
        *o = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

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
fn sha2_hex(b: &[u8], bits: i64) -> Option<String> {
    Some(match bits {
        224 => hex(&sha2::Sha224::digest(b)),
        256 => hex(&sha2::Sha256::digest(b)),
        384 => hex(&sha2::Sha384::digest(b)),
        512 => hex(&sha2::Sha512::digest(b)),
        _ => return None,
    })
}

/// A STRING's UTF-8 bytes or BYTES' own (the digests and TO_BASE64 take either, as Flink's).
fn bytes_arg(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Str(s) => Some(s.as_bytes()),
        Value::Bytes(b) => Some(b),
        _ => None,
    }
}

/// One STRING or BYTES argument.
const ONE_STRING_OR_BYTES: Typing = |a| {
    count(a, 1, 1)?;
    match a[0] {
        Some(SqlType::Bytes) => Ok((vec![SqlType::Bytes], SqlType::String)),
        _ => strings(a, 1, false),
    }
};

fn hash_with(a: &[Value], f: fn(&[u8]) -> String) -> Result<Value, String> {
    Ok(bytes_arg(&a[0]).map_or(Value::Null, |b| Value::Str(f(b))))
}

/// Java's charsets Flink's ENCODE and DECODE name most (any case; aliases as Java's).
#[derive(Clone, Copy)]
enum Charset {
    Utf8,
    Latin1,
    Ascii,
    /// UTF-16: encoded big-endian after a byte-order mark; decoded by its mark, if any
    /// (big-endian without one).
    Utf16,
    Utf16Be,
    Utf16Le,
}

fn charset(name: &str) -> Result<Charset, String> {
    Ok(match name.to_ascii_uppercase().as_str() {
        "UTF-8" | "UTF8" => Charset::Utf8,
        "ISO-8859-1" | "ISO8859-1" | "ISO_8859_1" | "LATIN1" | "L1" => Charset::Latin1,
        "US-ASCII" | "ASCII" => Charset::Ascii,
        "UTF-16" | "UTF16" => Charset::Utf16,
        "UTF-16BE" => Charset::Utf16Be,
        "UTF-16LE" => Charset::Utf16Le,
        _ => {
            return Err(format!(
                "unsupported charset '{name}' (UTF-8, ISO-8859-1, US-ASCII, UTF-16, UTF-16BE, UTF-16LE)"
            ));
        }
    })
}

/// Flink's ENCODE(s, charset): Java's `String.getBytes(charset)`, a character the charset
/// cannot hold becoming `?`.
fn eval_encode(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(name)) = (str_arg(&a[0]), str_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    let narrow = |max: u32| {
        s.chars()
            .map(|c| if u32::from(c) <= max { c as u8 } else { b'?' })
            .collect()
    };
    let utf16 = |be: bool| -> Vec<u8> {
        s.encode_utf16()
            .flat_map(|u| if be { u.to_be_bytes() } else { u.to_le_bytes() })
            .collect()
    };
    Ok(Value::Bytes(match charset(name)? {
        Charset::Utf8 => s.as_bytes().to_vec(),
        Charset::Latin1 => narrow(0xff),
        Charset::Ascii => narrow(0x7f),
        Charset::Utf16 => [0xfe, 0xff].into_iter().chain(utf16(true)).collect(),
        Charset::Utf16Be => utf16(true),
        Charset::Utf16Le => utf16(false),
    }))
}

/// Flink's DECODE(bytes, charset): Java's `new String(bytes, charset)`, a malformed sequence
/// becoming U+FFFD.
fn eval_decode(a: &[Value]) -> Result<Value, String> {
    let (Some(b), Some(name)) = (bytes_arg(&a[0]), str_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    let utf16 = |b: &[u8], be: bool| {
        let units: Vec<u16> = b
            .chunks(2)
            .map(|c| match c {
                [x, y] if be => u16::from_be_bytes([*x, *y]),
                [x, y] => u16::from_le_bytes([*x, *y]),
                // A lone last byte is malformed.
                _ => 0xfffd,
            })
            .collect();
        String::from_utf16_lossy(&units)
    };
    Ok(Value::Str(match charset(name)? {
        Charset::Utf8 => String::from_utf8_lossy(b).into_owned(),
        Charset::Latin1 => b.iter().map(|&x| char::from(x)).collect(),
        Charset::Ascii => b
            .iter()
            .map(|&x| if x < 0x80 { char::from(x) } else { '\u{fffd}' })
            .collect(),
        Charset::Utf16 => match b {
            [0xff, 0xfe, rest @ ..] => utf16(rest, false),
            [0xfe, 0xff, rest @ ..] => utf16(rest, true),
            _ => utf16(b, true),
        },
        Charset::Utf16Be => utf16(b, true),
        Charset::Utf16Le => utf16(b, false),
    }))
}

fn eval_sha2(a: &[Value]) -> Result<Value, String> {
    let (Some(s), Some(bits)) = (bytes_arg(&a[0]), int_arg(&a[1])) else {
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
/// `binary_length(bytes, n, pad)`: `CAST(x AS BINARY(n))` (pad TRUE: zero bytes up to `n`)
/// and `CAST(x AS VARBINARY(n))`, both cut to `n` bytes, as Flink's CAST.
fn binary_length(a: &[Value]) -> Result<Value, String> {
    let (Value::Bytes(b), Some(n)) = (&a[0], int_arg(&a[1])) else {
        return Ok(Value::Null);
    };
    let n = usize::try_from(n).map_err(|_| format!("a length of {n} bytes"))?;
    let mut b = b.clone();
    if matches!(a[2], Value::Bool(true)) {
        b.resize(n, 0);
    } else {
        b.truncate(n);
    }
    Ok(Value::Bytes(b))
}

pub(super) fn functions() -> Vec<Arc<ScalarUDF>> {
    macro_rules! digest {
        ($name:literal, $usage:literal, $hash:ty) => {
            udf($name, $usage, ONE_STRING_OR_BYTES, |a| {
                hash_with(a, |b| hex(&<$hash>::digest(b)))
            })
        };
    }
    vec![
        udf(
            "binary_length",
            "CAST(x AS BINARY(n))",
            |a| {
                count(a, 3, 3)?;
                Ok((
                    vec![SqlType::Bytes, SqlType::BigInt, SqlType::Boolean],
                    SqlType::Bytes,
                ))
            },
            binary_length,
        ),
        digest!("md5", "MD5(s)", md5::Md5),
        digest!("sha1", "SHA1(s)", sha1::Sha1),
        digest!("sha224", "SHA224(s)", sha2::Sha224),
        digest!("sha256", "SHA256(s)", sha2::Sha256),
        digest!("sha384", "SHA384(s)", sha2::Sha384),
        digest!("sha512", "SHA512(s)", sha2::Sha512),
        udf(
            "sha2",
            "SHA2(s, bits)",
            |a| {
                // STRING or BYTES, and the bit length.
                let bytes = a.first() == Some(&Some(SqlType::Bytes));
                let mut as_string = a.to_vec();
                if bytes {
                    as_string[0] = None;
                }
                let (mut tys, ret) = strings(&as_string, 2, true)?;
                if bytes {
                    tys[0] = SqlType::Bytes;
                }
                Ok((tys, ret))
            },
            eval_sha2,
        ),
        udf("to_base64", "TO_BASE64(s)", ONE_STRING_OR_BYTES, |a| {
            Ok(bytes_arg(&a[0]).map_or(Value::Null, |b| Value::Str(base64(b))))
        }),
        udf(
            "encode",
            "ENCODE(s, charset)",
            |a| {
                Ok((
                    strings(a, 2, false).map(|_| vec![SqlType::String; 2])?,
                    SqlType::Bytes,
                ))
            },
            eval_encode,
        ),
        udf(
            "decode",
            "DECODE(bytes, charset)",
            |a| {
                count(a, 2, 2)?;
                if !matches!(a[0], None | Some(SqlType::Bytes)) {
                    return Err("takes BYTES and a charset name".into());
                }
                Ok((vec![SqlType::Bytes, SqlType::String], SqlType::String))
            },
            eval_decode,
        ),
        udf(
            "unhex",
            "UNHEX(s)",
            |a| Ok((strings(a, 1, false)?.0, SqlType::Bytes)),
            |a| {
                Ok(str_arg(&a[0])
                    .and_then(unhex)
                    .map_or(Value::Null, Value::Bytes))
            },
        ),
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
            sha2_hex(b"", 256).as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(sha2_hex(b"abc", 128), None);
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
