//! The order rules, independent of the SDK (only `serde` and `serde_json`).
//!
//! Kept SDK-free so the host can compile this very file natively, e.g.
//! `#[path = "../../plugins/order-validator/src/order.rs"] mod order;`,
//! and benchmark the same logic without Wasm.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// An order that passed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Order {
    pub order_id: i64,
    pub amount_cents: i64,
}

/// Why an order is invalid; its `Display` is the reject reason.
#[derive(Debug)]
pub enum Invalid {
    /// `data` is not valid JSON (syntax error, truncated, or not UTF-8).
    NotJson(serde_json::Error),
    /// `data` is valid JSON but not an object.
    NotObject,
    /// A required field is absent.
    Missing(&'static str),
    /// A field is present but not a JSON integer that fits an `i64`; `got` describes it.
    NotInteger {
        field: &'static str,
        got: &'static str,
    },
    /// `amount_cents` is below zero.
    NegativeAmount(i64),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotJson(e) => write!(f, "data is not JSON: {e}"),
            Self::NotObject => f.write_str("data must be a JSON object"),
            Self::Missing(field) => write!(f, "missing field {field}"),
            Self::NotInteger { field, got } => write!(f, "{field} must be an integer, got {got}"),
            Self::NegativeAmount(n) => write!(f, "amount_cents must be >= 0, got {n}"),
        }
    }
}

impl std::error::Error for Invalid {}

/// Checks the JSON in an entry's `data` field.
///
/// Rules, in order: valid JSON; an object; `order_id` present and an integer;
/// `amount_cents` present and an integer; `amount_cents >= 0`. Other keys are
/// ignored; a repeated key counts with its last value.
pub fn validate(data: &[u8]) -> Result<Order, Invalid> {
    let raw: RawOrder = serde_json::from_slice(data).map_err(|e| {
        // Every value the visitors below see is accepted, so a data (not
        // syntax) error can only mean the top level is not an object.
        if e.is_data() {
            Invalid::NotObject
        } else {
            Invalid::NotJson(e)
        }
    })?;
    let order_id = raw.order_id.integer("order_id")?;
    let amount_cents = raw.amount_cents.integer("amount_cents")?;
    if amount_cents < 0 {
        return Err(Invalid::NegativeAmount(amount_cents));
    }
    Ok(Order {
        order_id,
        amount_cents,
    })
}

/// The two fields the rules read, as found; no allocation for either.
#[derive(Default)]
struct RawOrder {
    order_id: IntField,
    amount_cents: IntField,
}

impl<'de> Deserialize<'de> for RawOrder {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(RawOrderVisitor)
    }
}

struct RawOrderVisitor;

impl<'de> Visitor<'de> for RawOrderVisitor {
    type Value = RawOrder;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawOrder, A::Error> {
        let mut raw = RawOrder::default();
        while let Some(key) = map.next_key()? {
            match key {
                Key::OrderId => raw.order_id = map.next_value()?,
                Key::AmountCents => raw.amount_cents = map.next_value()?,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(raw)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Key {
    OrderId,
    AmountCents,
    #[serde(other)]
    Other,
}

/// A field that should hold an integer: absent, an `i64`, or what it held instead.
///
/// Accepts every JSON value, so a wrong type is reported by name, not as a parse error.
#[derive(Default)]
enum IntField {
    #[default]
    Absent,
    Int(i64),
    Other(&'static str),
}

impl IntField {
    fn integer(self, field: &'static str) -> Result<i64, Invalid> {
        match self {
            Self::Absent => Err(Invalid::Missing(field)),
            Self::Int(n) => Ok(n),
            Self::Other(got) => Err(Invalid::NotInteger { field, got }),
        }
    }
}

impl<'de> Deserialize<'de> for IntField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(IntFieldVisitor)
    }
}

struct IntFieldVisitor;

impl<'de> Visitor<'de> for IntFieldVisitor {
    type Value = IntField;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_i64<E>(self, n: i64) -> Result<IntField, E> {
        Ok(IntField::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<IntField, E> {
        Ok(i64::try_from(n).map_or(IntField::Other("an integer out of range"), IntField::Int))
    }

    /// `serde_json` also lands here for integers beyond `u64`/`i64` range.
    fn visit_f64<E>(self, _: f64) -> Result<IntField, E> {
        Ok(IntField::Other("a float"))
    }

    fn visit_bool<E>(self, _: bool) -> Result<IntField, E> {
        Ok(IntField::Other("a boolean"))
    }

    fn visit_str<E>(self, _: &str) -> Result<IntField, E> {
        Ok(IntField::Other("a string"))
    }

    fn visit_unit<E>(self) -> Result<IntField, E> {
        Ok(IntField::Other("null"))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<IntField, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(IntField::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<IntField, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(IntField::Other("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(data: &str) -> String {
        validate(data.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn accepts_valid_orders() {
        let order = validate(br#"{"order_id": 42, "amount_cents": 0, "note": [1, {"x": null}]}"#);
        assert_eq!(
            order.unwrap(),
            Order {
                order_id: 42,
                amount_cents: 0
            }
        );
        assert!(validate(br#"{"amount_cents": 1999, "order_id": -7}"#).is_ok());
    }

    #[test]
    fn rejects_non_json() {
        assert_eq!(
            reason("{nope"),
            "data is not JSON: key must be a string at line 1 column 2"
        );
        assert!(reason("").starts_with("data is not JSON: EOF"));
        assert!(reason(r#"{"order_id": 1} x"#).starts_with("data is not JSON: trailing"));
        assert!(validate(b"\xff").is_err());
    }

    #[test]
    fn rejects_non_objects() {
        for data in ["[1, 2]", "null", "42", r#""order""#, "true"] {
            assert_eq!(reason(data), "data must be a JSON object", "{data}");
        }
    }

    #[test]
    fn rejects_missing_fields_in_order() {
        assert_eq!(reason("{}"), "missing field order_id");
        assert_eq!(reason(r#"{"order_id": 1}"#), "missing field amount_cents");
    }

    #[test]
    fn names_the_wrong_type() {
        let cases = [
            (
                r#"{"order_id": "1", "amount_cents": 1}"#,
                "order_id must be an integer, got a string",
            ),
            (
                r#"{"order_id": 1.5, "amount_cents": 1}"#,
                "order_id must be an integer, got a float",
            ),
            (
                r#"{"order_id": null, "amount_cents": 1}"#,
                "order_id must be an integer, got null",
            ),
            (
                r#"{"order_id": [1], "amount_cents": 1}"#,
                "order_id must be an integer, got an array",
            ),
            (
                r#"{"order_id": 1, "amount_cents": {}}"#,
                "amount_cents must be an integer, got an object",
            ),
            (
                r#"{"order_id": 1, "amount_cents": true}"#,
                "amount_cents must be an integer, got a boolean",
            ),
            (
                r#"{"order_id": 9223372036854775808, "amount_cents": 1}"#,
                "order_id must be an integer, got an integer out of range",
            ),
        ];
        for (data, want) in cases {
            assert_eq!(reason(data), want, "{data}");
        }
    }

    #[test]
    fn rejects_negative_amount() {
        assert_eq!(
            reason(r#"{"order_id": 1, "amount_cents": -5}"#),
            "amount_cents must be >= 0, got -5"
        );
    }

    #[test]
    fn last_duplicate_key_wins() {
        assert!(validate(br#"{"order_id": "x", "order_id": 1, "amount_cents": 0}"#).is_ok());
    }
}
