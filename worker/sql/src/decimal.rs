//! DECIMAL(p, s) as Flink computes it: values are an `i128` unscaled number and a scale
//! (`1.50` is 150 at scale 2), at most 38 digits. This module owns the arithmetic on them
//! (rounding HALF_UP, as Java's `BigDecimal` with `RoundingMode.HALF_UP`; a result that does
//! not fit its precision is NULL, as Flink's `DecimalData.fromBigDecimal` makes it), their
//! text (read and written as `BigDecimal.toPlainString` writes it) and Flink's rules for the
//! precision and scale of results (`LogicalTypeMerging`: `+ - * / %`, ROUND, SUM, AVG).

/// The largest precision of a DECIMAL (Flink's `DecimalType.MAX_PRECISION`).
pub const MAX_PRECISION: u8 = 38;

/// The least scale Flink keeps when a result's precision is cut to 38 (its
/// `MINIMUM_ADJUSTED_SCALE`).
const MIN_ADJUSTED_SCALE: i32 = 6;

/// `10^n` for n in 0..=38.
const POW10: [i128; 39] = {
    let mut t = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `10^n`, None beyond 38 (it does not fit an `i128`).
#[inline]
pub fn pow10(n: u32) -> Option<i128> {
    POW10.get(n as usize).copied()
}

/// Whether `v` has at most `precision` digits.
#[inline]
pub fn fits(v: i128, precision: u8) -> bool {
    match pow10(u32::from(precision)) {
        Some(limit) => v.unsigned_abs() < limit.unsigned_abs(),
        None => true,
    }
}

/// `a / b` rounded HALF_UP (ties away from zero); `b` is not zero.
#[inline]
pub fn div_half_up(a: i128, b: i128) -> i128 {
    let (q, r) = (a / b, a % b);
    // |r| >= |b| - |r| is 2|r| >= |b| without overflowing.
    if r != 0 && r.unsigned_abs() >= b.unsigned_abs() - r.unsigned_abs() {
        if (a < 0) == (b < 0) { q + 1 } else { q - 1 }
    } else {
        q
    }
}

/// `v` at scale `from` rescaled to scale `to`, rounding HALF_UP when digits are dropped;
/// None when it no longer fits an `i128`.
#[inline]
pub fn rescale(v: i128, from: u8, to: u8) -> Option<i128> {
    match to.cmp(&from) {
        std::cmp::Ordering::Equal => Some(v),
        std::cmp::Ordering::Greater => v.checked_mul(pow10(u32::from(to - from))?),
        std::cmp::Ordering::Less => match pow10(u32::from(from - to)) {
            Some(d) => Some(div_half_up(v, d)),
            // More than 38 digits dropped: nothing is left of an `i128`.
            None => Some(0),
        },
    }
}

/// `v` (at scale `from`) as a DECIMAL(p, s): rounded HALF_UP to `s`; None (Flink's NULL)
/// when it has more than `p` digits then.
#[inline]
pub fn to_type(v: i128, from: u8, p: u8, s: u8) -> Option<i128> {
    rescale(v, from, s).filter(|&r| fits(r, p))
}

/// The text of `v` at scale `s`, as `BigDecimal.toPlainString` writes it: `1.50`, `-0.05`,
/// `100`.
pub fn format(v: i128, s: u8) -> String {
    let digits = v.unsigned_abs().to_string();
    let s = usize::from(s);
    let mut out = String::with_capacity(digits.len() + 3);
    if v < 0 {
        out.push('-');
    }
    if s == 0 {
        out.push_str(&digits);
    } else if digits.len() > s {
        let (int, frac) = digits.split_at(digits.len() - s);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', s - digits.len()));
        out.push_str(&digits);
    }
    out
}

/// Reads a decimal number's text (`-12.345`, `1e2`, ` 7 `; surrounding blanks allowed, as
/// Flink trims) as a DECIMAL(p, s), rounding HALF_UP. `Err` when the text is not a number,
/// `Ok(None)` when it does not fit `p` digits (Flink's NULL).
pub fn parse(text: &str, p: u8, s: u8) -> Result<Option<i128>, String> {
    let bad = || format!("'{text}' is not a DECIMAL number");
    let t = text.trim();
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i32>().map_err(|_| bad())?),
        None => (t, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    // The value is digits × 10^(exp − |frac|); at scale s its unscaled number is
    // digits × 10^shift.
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let shift = i64::from(exp) - frac.len() as i64 + i64::from(s);
    let unscaled = if shift >= 0 {
        if digits.is_empty() {
            0
        } else if digits.len() as i64 + shift > i64::from(MAX_PRECISION) {
            return Ok(None);
        } else {
            let d: i128 = digits.parse().map_err(|_| bad())?;
            d * POW10[shift as usize]
        }
    } else {
        let cut = (-shift) as usize;
        if cut > digits.len() {
            0
        } else {
            let (keep, dropped) = digits.split_at(digits.len() - cut);
            if keep.len() > usize::from(MAX_PRECISION) {
                return Ok(None);
            }
            let k: i128 = if keep.is_empty() {
                0
            } else {
                keep.parse().map_err(|_| bad())?
            };
            if dropped.as_bytes()[0] >= b'5' {
                k + 1
            } else {
                k
            }
        }
    };
    let v = if neg { -unscaled } else { unscaled };
    Ok(fits(v, p).then_some(v))
}

/// The exact decimal value of a double's shortest text (Java's `Double.toString`, which
/// Flink's CAST from DOUBLE reads through `BigDecimal.valueOf`) as a DECIMAL(p, s); None
/// for NaN, infinities and values that do not fit.
pub fn from_f64(d: f64, p: u8, s: u8) -> Option<i128> {
    if !d.is_finite() {
        return None;
    }
    // Rust's shortest round-trip text has the digits Java's Double.toString has.
    parse(&format!("{d:e}"), p, s).ok().flatten()
}

/// The double nearest to `v` at scale `s`.
pub fn to_f64(v: i128, s: u8) -> f64 {
    // Through the text, so that 1.10 becomes the double written 1.1 (as BigDecimal's
    // doubleValue).
    format(v, s).parse().unwrap_or(f64::NAN)
}

/// DECIMAL(p, s) of a result whose exact type would be (precision, scale), as Flink cuts it
/// to 38 digits: the integer part is kept, the scale shrinks but not below 6 (or the scale
/// itself when it is smaller).
fn adjust(precision: i32, scale: i32) -> (u8, u8) {
    if precision <= i32::from(MAX_PRECISION) {
        return (precision as u8, scale as u8);
    }
    let integer = precision - scale;
    let min_scale = scale.min(MIN_ADJUSTED_SCALE);
    let scale = (i32::from(MAX_PRECISION) - integer).max(min_scale);
    (MAX_PRECISION, scale as u8)
}

/// An arithmetic operator on DECIMALs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`, MOD
    Rem,
}

impl Op {
    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Rem => "%",
        }
    }

    /// The (precision, scale) of `DECIMAL(p1, s1) op DECIMAL(p2, s2)` (Flink's
    /// `LogicalTypeMerging.find*DecimalType`).
    pub fn result_type(self, (p1, s1): (u8, u8), (p2, s2): (u8, u8)) -> (u8, u8) {
        let (p1, s1, p2, s2) = (i32::from(p1), i32::from(s1), i32::from(p2), i32::from(s2));
        match self {
            Op::Add | Op::Sub => {
                let s = s1.max(s2);
                adjust((p1 - s1).max(p2 - s2) + s + 1, s)
            }
            Op::Mul => adjust(p1 + p2 + 1, s1 + s2),
            Op::Div => {
                let s = MIN_ADJUSTED_SCALE.max(s1 + p2 + 1);
                adjust(p1 - s1 + s2 + s, s)
            }
            Op::Rem => {
                let s = s1.max(s2);
                adjust((p1 - s1).min(p2 - s2) + s, s)
            }
        }
    }

    /// `a op b` (each an unscaled value and its scale) as a DECIMAL(p, s): `Ok(None)` when
    /// the result does not fit (Flink's NULL), `Err` for a division by zero.
    #[inline]
    pub fn apply(
        self,
        (a, sa): (i128, u8),
        (b, sb): (i128, u8),
        (p, s): (u8, u8),
    ) -> Result<Option<i128>, &'static str> {
        let common = sa.max(sb);
        let exact = match self {
            Op::Add | Op::Sub | Op::Rem => {
                let (Some(x), Some(y)) = (rescale(a, sa, common), rescale(b, sb, common)) else {
                    return Ok(None);
                };
                match self {
                    Op::Add => x.checked_add(y),
                    Op::Sub => x.checked_sub(y),
                    _ if y == 0 => return Err("Division by zero"),
                    _ => Some(x % y),
                }
                .map(|v| (v, common))
            }
            // Two values that fit an i64 (most do: a BIGINT times a literal) multiply
            // without overflow checks; i128's checked multiply is a library call.
            Op::Mul => product(a, b).map(|v| (v, sa + sb)),
            Op::Div => {
                if b == 0 {
                    return Err("Division by zero");
                }
                // a/10^sa ÷ b/10^sb at scale s is a·10^(s + sb − sa) / b, rounded.
                let e = i32::from(s) + i32::from(sb) - i32::from(sa);
                let (num, den) = if e >= 0 {
                    (pow10(e as u32).and_then(|m| a.checked_mul(m)), Some(b))
                } else {
                    (Some(a), pow10((-e) as u32).and_then(|m| b.checked_mul(m)))
                };
                match (num, den) {
                    (Some(n), Some(d)) => Some((div_half_up(n, d), s)),
                    _ => None,
                }
            }
        };
        Ok(exact.and_then(|(v, scale)| to_type(v, scale, p, s)))
    }
}

/// `a * b` exactly (its scale is the sum of theirs), None when it does not fit an `i128`.
#[inline(always)]
pub fn product(a: i128, b: i128) -> Option<i128> {
    // Two values that fit an i64 (most do: a BIGINT times a literal) multiply without
    // overflow checks; i128's checked multiply is a library call.
    match (i64::try_from(a), i64::try_from(b)) {
        (Ok(x), Ok(y)) => Some(i128::from(x) * i128::from(y)),
        _ => a.checked_mul(b),
    }
}

/// `a * b` as a DECIMAL(p, s) whose scale `s` is the sum of the operands' scales (what
/// Flink's multiply type gives unless the precision is capped): no rescale, only the
/// precision check. Equal to `Op::Mul.apply` for such types.
#[inline(always)]
pub fn product_at_scale(a: i128, b: i128, p: u8) -> Option<i128> {
    product(a, b).filter(|&v| fits(v, p))
}

/// The (precision, scale) of ROUND(DECIMAL(p, s), r) (Flink's `findRoundDecimalType`).
pub fn round_type(p: u8, s: u8, r: i64) -> (u8, u8) {
    if r >= i64::from(s) {
        (p, s)
    } else if r < 0 {
        ((1 + p - s).min(MAX_PRECISION), 0)
    } else {
        ((1 + p - s + r as u8).min(MAX_PRECISION), r as u8)
    }
}

/// `v` at scale `s` rounded HALF_UP (`truncate`: toward zero) to `r` digits after the point
/// (negative `r`: before it), still at scale `s`.
pub fn round(v: i128, s: u8, r: i64, truncate: bool) -> i128 {
    if r >= i64::from(s) {
        return v;
    }
    let Some(unit) = pow10((i64::from(s) - r) as u32) else {
        return 0;
    };
    let q = if truncate {
        v / unit
    } else {
        div_half_up(v, unit)
    };
    q.saturating_mul(unit)
}

/// The (precision, scale) of SUM over DECIMAL(p, s): DECIMAL(38, s).
pub fn sum_type(s: u8) -> (u8, u8) {
    (MAX_PRECISION, s)
}

/// The (precision, scale) of AVG over DECIMAL(p, s): the sum's DECIMAL(38, s) divided by the
/// count's DECIMAL(20, 0).
pub fn avg_type(s: u8) -> (u8, u8) {
    Op::Div.result_type((MAX_PRECISION, s), (20, 0))
}

/// The DECIMAL type an integer type converts to in arithmetic with a DECIMAL: as many
/// digits as its largest value has (TINYINT 3, SMALLINT 5, INT 10, BIGINT 19).
pub fn integer_type(bits: u32) -> (u8, u8) {
    match bits {
        8 => (3, 0),
        16 => (5, 0),
        32 => (10, 0),
        _ => (19, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_read_exactly_and_rounded_half_up() {
        assert_eq!(parse("1.50", 10, 2), Ok(Some(150)));
        assert_eq!(parse("1.5", 10, 2), Ok(Some(150)));
        assert_eq!(parse(" 12.345 ", 10, 2), Ok(Some(1235)));
        assert_eq!(parse("-0.005", 10, 2), Ok(Some(-1)));
        assert_eq!(parse("1e2", 10, 2), Ok(Some(10000)));
        assert_eq!(parse("123.4", 4, 2), Ok(None));
        assert!(parse("abc", 10, 2).is_err());
        assert!(parse("", 10, 2).is_err());
        assert_eq!(
            parse("12345678901234567890.1234567890", 38, 10),
            Ok(Some(123456789012345678901234567890))
        );
    }

    #[test]
    fn text_is_written_as_plain_strings() {
        assert_eq!(format(150, 2), "1.50");
        assert_eq!(format(-5, 2), "-0.05");
        assert_eq!(format(100, 0), "100");
        assert_eq!(format(0, 3), "0.000");
    }

    #[test]
    fn result_types_follow_flinks_rules() {
        assert_eq!(Op::Add.result_type((10, 2), (5, 3)), (12, 3));
        assert_eq!(Op::Mul.result_type((4, 3), (19, 0)), (24, 3));
        assert_eq!(Op::Div.result_type((10, 2), (10, 2)), (23, 13));
        assert_eq!(Op::Sub.result_type((38, 18), (38, 18)), (38, 17));
        assert_eq!(Op::Mul.result_type((20, 10), (20, 10)), (38, 17));
        assert_eq!(Op::Mul.result_type((38, 2), (38, 2)), (38, 4));
        assert_eq!(avg_type(2), (38, 6));
        assert_eq!(round_type(10, 3, 2), (10, 2));
    }

    #[test]
    fn arithmetic_rounds_half_up_and_overflows_to_none() {
        let div = |a, b| Op::Div.apply((a, 2), (b, 2), (23, 13)).unwrap();
        assert_eq!(div(200, 300), Some(6_666_666_666_667));
        assert_eq!(div(-200, 300), Some(-6_666_666_666_667));
        assert_eq!(
            Op::Div.apply((1, 0), (0, 0), (10, 6)),
            Err("Division by zero")
        );
        let big = POW10[38] - 1;
        assert_eq!(Op::Add.apply((big, 0), (1, 0), (38, 0)), Ok(None));
        assert_eq!(round(-1005, 3, 2, false), -1010);
        assert_eq!(round(1005, 3, 2, true), 1000);
    }

    #[test]
    fn a_product_at_the_sum_of_the_scales_is_the_multiply_of_apply() {
        // (a, scale a, b, scale b, result precision): the evaluator's shortcut for a product
        // typed at the sum of its operands' scales must agree with the general path,
        // overflow (to None) included.
        let big = POW10[38] - 1;
        for (a, sa, b, sb, p) in [
            (908, 3, 123_456_789, 0, 23),
            (-908, 3, i64::MAX as i128, 0, 23),
            (i64::MIN as i128, 0, 999, 3, 24),
            (150, 2, -25, 1, 6),
            (99_999, 2, 99_999, 2, 9),
            (99_999, 2, 99_999, 2, 10),
            (big, 0, 2, 0, 38),
            (big / 2, 1, 2, 0, 38),
            (POW10[20], 0, POW10[20], 0, 38),
        ] {
            assert_eq!(
                product_at_scale(a, b, p),
                Op::Mul.apply((a, sa), (b, sb), (p, sa + sb)).unwrap(),
                "{a}e-{sa} * {b}e-{sb} as DECIMAL({p}, {})",
                sa + sb
            );
        }
        assert_eq!(product_at_scale(99_999, 99_999, 9), None);
    }
}
