//! How a list item carries its delivery count in Redis: an item the host
//! puts back on the queue (a retry, or a dead consumer's processing list
//! moved back) is wrapped as `MAGIC <deliveries>:<refused>:` + the item's
//! bytes; an item as producers pushed it has no wrapper and 0 deliveries.
//!
//! Why a wrapper, not a hash keyed by the item: two equal items are two
//! items, and a hash keyed by the bytes would share one count between them
//! (and leak entries for items that never come back). The wrapper travels
//! with the item through every move, crash and recovery; the handler and the
//! dead letter always see the item unwrapped, byte for byte. The magic starts
//! with a NUL byte and names the host, so no JSON or text item can look like
//! one; an item pushed with exactly these leading bytes would be read as
//! wrapped (documented).

/// The wrapper's first bytes.
pub(crate) const MAGIC: &[u8] = b"\x00streamhost:attempts:";

/// An item as stored in a list, with what its wrapper says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    /// Deliveries before this one.
    pub(crate) deliveries: u32,
    /// Of those, deliveries whose settling Redis refused (not handler attempts).
    pub(crate) refused: u32,
    /// Where the producer's bytes start in the stored item.
    start: usize,
    /// The item as stored (wrapped or not), to find and remove it again.
    pub(crate) stored: Vec<u8>,
}

impl Item {
    /// Reads what a stored item says; anything that is not a well-formed
    /// wrapper is a producer's item with no deliveries.
    pub(crate) fn parse(stored: Vec<u8>) -> Item {
        let plain = |stored| Item {
            deliveries: 0,
            refused: 0,
            start: 0,
            stored,
        };
        let Some(rest) = stored.strip_prefix(MAGIC) else {
            return plain(stored);
        };
        let mut numbers = [0u32; 2];
        let mut at = MAGIC.len();
        let mut rest = rest;
        for n in &mut numbers {
            let Some(end) = rest.iter().position(|&b| b == b':') else {
                return plain(stored);
            };
            let Some(value) = std::str::from_utf8(&rest[..end])
                .ok()
                .and_then(|t| t.parse().ok())
            else {
                return plain(stored);
            };
            *n = value;
            at += end + 1;
            rest = &rest[end + 1..];
        }
        Item {
            deliveries: numbers[0],
            refused: numbers[1],
            start: at,
            stored,
        }
    }

    /// The producer's bytes.
    pub(crate) fn data(&self) -> &[u8] {
        &self.stored[self.start..]
    }
}

/// `data` wrapped with its counts.
pub(crate) fn wrap(data: &[u8], deliveries: u32, refused: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAGIC.len() + 24 + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(format!("{deliveries}:{refused}:").as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_items_round_trip_and_plain_ones_have_no_deliveries() {
        let data = b"\x00\xff{\"a\":1}:2:";
        let item = Item::parse(wrap(data, 3, 1));
        assert_eq!(
            (item.deliveries, item.refused, item.data()),
            (3, 1, &data[..])
        );
        let plain = Item::parse(data.to_vec());
        assert_eq!((plain.deliveries, plain.data()), (0, &data[..]));
        let broken = [MAGIC, b"x:1:rest"].concat();
        assert_eq!(Item::parse(broken.clone()).data(), &broken[..]);
        assert_eq!(Item::parse(Vec::new()).data(), b"");
    }
}
