//! Byte-slice helpers for hot paths that compare short byte strings: serialized keys
//! (usually a few bytes) and, in the SQL crate, JSON field names.

/// `a == b`, inline for the short slices keys and names mostly are: up to 16 bytes are
/// compared as two overlapping 1-, 4- or 8-byte loads from each end instead of a call to
/// `memcmp`, whose call and dispatch cost more than the comparison itself for slices this
/// short (3 % of Nexmark q5's cycles went to `memcmp` from the window operator's key check
/// alone). Longer slices use `memcmp`.
#[inline(always)]
pub fn eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Loads from both ends cover every length in a range without a loop. (`first_chunk` and
    // `last_chunk` check only the length, which each arm's range already implies, so the
    // loads compile without bounds checks.)
    fn ends<const N: usize>(s: &[u8]) -> Option<(&[u8; N], &[u8; N])> {
        Some((s.first_chunk::<N>()?, s.last_chunk::<N>()?))
    }
    match n {
        0 => true,
        1..4 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..8 => ends::<4>(a) == ends::<4>(b),
        8..=16 => ends::<8>(a) == ends::<8>(b),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slices_compare_equal_exactly_when_their_bytes_do() {
        // Every length up to 20, with a difference at each position in turn.
        for n in 0..=20usize {
            let a: Vec<u8> = (0..n as u8).map(|i| b'a' + i).collect();
            assert!(super::eq(&a, &a.clone()), "{a:?}");
            for at in 0..n {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!super::eq(&a, &b), "{a:?} vs {b:?}");
            }
            let mut longer = a.clone();
            longer.push(b'z');
            assert!(!super::eq(&a, &longer) && !super::eq(&longer, &a));
        }
    }
}
