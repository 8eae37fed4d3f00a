//! Stream ids (`<ms>-<seq>`) read as numbers. The hot path reads every
//! handled entry's id three times (held, released, its latency), and a
//! digit-by-digit loop is a chain of multiplications as long as the id, so
//! digits are read eight at a time (BENCHMARKS.md, "CPU per entry").

/// `<ms>-<seq>` with both parts canonical decimals of at most 19 digits (no
/// sign, no leading zero), so that it formats back to itself; else `None`.
pub(crate) fn canonical(id: &[u8]) -> Option<(u64, u64)> {
    let dash = id.iter().position(|b| *b == b'-')?;
    Some((
        canonical_part(&id[..dash])?,
        canonical_part(&id[dash + 1..])?,
    ))
}

/// The milliseconds part of an id (`<ms>` or `<ms>-<anything>`), if it is
/// a decimal `u64`.
pub(crate) fn time_ms(id: &[u8]) -> Option<u64> {
    let ms = id.split(|b| *b == b'-').next()?;
    if ms.is_empty() || !ms.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if ms.len() <= 19 {
        return Some(decimal(ms));
    }
    // Twenty digits or more may overflow.
    ms.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

fn canonical_part(digits: &[u8]) -> Option<u64> {
    let valid = matches!(digits.len(), 1..=19)
        && (digits.len() == 1 || digits[0] != b'0')
        && digits.iter().all(u8::is_ascii_digit);
    valid.then(|| decimal(digits))
}

/// The value of 1 to 19 ASCII digits (checked by the caller).
fn decimal(digits: &[u8]) -> u64 {
    let mut chunks = digits.chunks_exact(8);
    let mut value = 0u64;
    for chunk in &mut chunks {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        value = value * 100_000_000 + eight_digits(u64::from_le_bytes(eight));
    }
    for d in chunks.remainder() {
        value = value * 10 + u64::from(d - b'0');
    }
    value
}

/// Eight ASCII digits read little-endian (the first digit in the low byte)
/// to their value: pairs, then quads, then the eight, by multiply-and-shift.
fn eight_digits(chunk: u64) -> u64 {
    let pairs = ((chunk & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561)) >> 8;
    let quads = ((pairs & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601)) >> 16;
    ((quads & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001)) >> 32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_read_eight_digits_at_a_time_as_one_by_one() {
        // Every length from 1 to 19 digits, many values of each.
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x % 10u64.pow(19)) >> (x % 63);
            assert_eq!(decimal(v.to_string().as_bytes()), v, "{v}");
        }
        for v in [0, 9, 10, 12_345_678, 123_456_789, 9_999_999_999_999_999_999] {
            assert_eq!(decimal(v.to_string().as_bytes()), v);
        }
    }

    #[test]
    fn only_the_canonical_spelling_is_a_stream_id() {
        assert_eq!(canonical(b"1700000000000-3"), Some((1_700_000_000_000, 3)));
        assert_eq!(canonical(b"0-0"), Some((0, 0)));
        for id in ["01-0", "1-00", "+1-0", "1-", "-1", "1", "1-2-3", "token-7"] {
            assert_eq!(canonical(id.as_bytes()), None, "{id}");
        }
        // Twenty digits are left to the text form.
        assert_eq!(canonical(b"18446744073709551615-0"), None);
    }

    #[test]
    fn an_ids_time_is_its_millisecond_part() {
        assert_eq!(time_ms(b"1700000000000-3"), Some(1_700_000_000_000));
        assert_eq!(time_ms(b"12"), Some(12));
        assert_eq!(time_ms(b"18446744073709551615-0"), Some(u64::MAX));
        assert_eq!(time_ms(b"18446744073709551616-0"), None);
        for id in ["x-1", "", "-1", "+1-0"] {
            assert_eq!(time_ms(id.as_bytes()), None, "{id}");
        }
    }
}
