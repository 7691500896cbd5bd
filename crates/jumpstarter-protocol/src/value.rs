//! `google.protobuf.Value` <-> JSON, with the semantics of upstream Jumpstarter 0.9.0.
//!
//! Upstream turns every Python value into JSON-compatible data and maps that onto `Value`. The
//! rules a peer can observe, and that this codec follows:
//!
//! * **Every number is a double** on the wire. Integers are sent as `number_value`; a Python
//!   peer receives `5` as `5.0`. Integers beyond 2^53 lose precision exactly as upstream's do.
//! * NaN and ±infinity are sent as `null_value`.
//! * Bytes travel as a `string_value` holding the bytes decoded as UTF-8 (not base64); bytes
//!   that are not UTF-8 are an error on the sending side ([`bytes_value`]).
//! * Tuples and sets are lists; maps are structs with string keys.
//! * `null` is always sent explicitly (`null_value`), and a `Value` with no kind decodes to null.
//!
//! Decoding maps a whole-valued double that fits an `i64`/`u64` to a JSON integer, so typed
//! Rust code can take `3.0` where it wants an integer (Python clients cannot send integers).
//! Encoding that integer again yields the identical double, so decoding loses nothing.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde_json::{Map, Number, Value as Json};

/// Encodes JSON as a protobuf `Value`.
pub fn to_proto(json: &Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(*b),
        Json::Number(n) => number_kind(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s.clone()),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_proto).collect(),
        }),
        Json::Object(map) => Kind::StructValue(Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// Encodes JSON by value, moving strings instead of cloning them.
pub fn into_proto(json: Json) -> Value {
    let kind = match json {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => number_kind(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(into_proto).collect(),
        }),
        Json::Object(map) => Kind::StructValue(Struct {
            fields: map.into_iter().map(|(k, v)| (k, into_proto(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

fn number_kind(x: f64) -> Kind {
    if x.is_finite() {
        Kind::NumberValue(x)
    } else {
        Kind::NullValue(0)
    }
}

/// The protobuf `Value` for a double, following upstream (NaN and infinities become null).
pub fn number(x: f64) -> Value {
    Value {
        kind: Some(number_kind(x)),
    }
}

/// Error for bytes that cannot travel as a `Value` (they must be valid UTF-8).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'utf-8' codec can't decode byte 0x{byte:02x} in position {position}: invalid start byte")]
pub struct NonUtf8Bytes {
    pub byte: u8,
    pub position: usize,
}

/// Encodes bytes the way upstream does: as a string holding the bytes decoded as UTF-8.
/// The error text mirrors Python's `UnicodeDecodeError` so clients see the same message.
pub fn bytes_value(bytes: &[u8]) -> Result<Value, NonUtf8Bytes> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(Value {
            kind: Some(Kind::StringValue(s.to_owned())),
        }),
        Err(e) => {
            let position = e.valid_up_to();
            Err(NonUtf8Bytes {
                byte: bytes[position],
                position,
            })
        }
    }
}

/// Decodes a protobuf `Value` into JSON.
pub fn from_proto(value: &Value) -> Json {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(*b),
        Some(Kind::NumberValue(x)) => json_number(*x),
        Some(Kind::StringValue(s)) => Json::String(s.clone()),
        Some(Kind::ListValue(list)) => Json::Array(list.values.iter().map(from_proto).collect()),
        Some(Kind::StructValue(s)) => Json::Object(
            s.fields
                .iter()
                .map(|(k, v)| (k.clone(), from_proto(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// Decodes a protobuf `Value` into JSON by value.
pub fn from_proto_owned(value: Value) -> Json {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::NumberValue(x)) => json_number(x),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::ListValue(list)) => {
            Json::Array(list.values.into_iter().map(from_proto_owned).collect())
        }
        Some(Kind::StructValue(s)) => Json::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, from_proto_owned(v)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// JSON for a double received from the wire: non-finite values are null, whole values that
/// fit an integer type become integers, everything else stays a float.
pub fn json_number(x: f64) -> Json {
    const I64_MIN: f64 = -9_223_372_036_854_775_808.0; // -2^63, exact
    const I64_END: f64 = 9_223_372_036_854_775_808.0; // 2^63, exact
    const U64_END: f64 = 18_446_744_073_709_551_616.0; // 2^64, exact
    if !x.is_finite() {
        return Json::Null;
    }
    if x.fract() == 0.0 {
        if (I64_MIN..I64_END).contains(&x) {
            return Json::Number(Number::from(x as i64));
        }
        if (0.0..U64_END).contains(&x) {
            return Json::Number(Number::from(x as u64));
        }
    }
    Number::from_f64(x).map_or(Json::Null, Json::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use prost::Message;
    use serde_json::json;

    #[test]
    fn wire_bytes_match_upstream_examples() {
        // Value 5 = 11 00 00 00 00 00 00 14 40; true = 20 01; "on" = 1a 02 6f 6e; null = 08 00.
        assert_eq!(
            to_proto(&json!(5)).encode_to_vec(),
            [0x11, 0, 0, 0, 0, 0, 0, 0x14, 0x40]
        );
        assert_eq!(to_proto(&json!(true)).encode_to_vec(), [0x20, 0x01]);
        assert_eq!(to_proto(&json!("on")).encode_to_vec(), b"\x1a\x02on");
        assert_eq!(to_proto(&Json::Null).encode_to_vec(), [0x08, 0x00]);
    }

    #[test]
    fn integers_travel_as_doubles() {
        let v = to_proto(&json!(1));
        assert_eq!(v.kind, Some(Kind::NumberValue(1.0)));
        // 2**60 + 1 loses its low bit, exactly as a Python peer does.
        let big = to_proto(&json!(1_152_921_504_606_846_977_u64));
        assert_eq!(big.kind, Some(Kind::NumberValue(1.152921504606847e18)));
    }

    #[test]
    fn non_finite_numbers_become_null() {
        assert_eq!(number(f64::NAN).kind, Some(Kind::NullValue(0)));
        assert_eq!(number(f64::INFINITY).kind, Some(Kind::NullValue(0)));
        assert_eq!(number(f64::NEG_INFINITY).kind, Some(Kind::NullValue(0)));
        assert_eq!(json_number(f64::NAN), Json::Null);
    }

    #[test]
    fn whole_doubles_decode_as_integers() {
        assert_eq!(json_number(3.0), json!(3));
        assert_eq!(json_number(-3.0), json!(-3));
        assert_eq!(json_number(2.5), json!(2.5));
        assert_eq!(json_number(1e19), json!(10_000_000_000_000_000_000_u64));
        assert!(json_number(1e300).is_f64());
        let port: u16 = serde_json::from_value(from_proto(&number(8080.0))).unwrap();
        assert_eq!(port, 8080);
        let ratio: f64 = serde_json::from_value(from_proto(&number(2.0))).unwrap();
        assert_eq!(ratio, 2.0);
    }

    #[test]
    fn empty_value_is_null() {
        assert_eq!(from_proto(&Value { kind: None }), Json::Null);
    }

    #[test]
    fn bytes_are_utf8_text() {
        assert_eq!(
            bytes_value(b"hi").unwrap().kind,
            Some(Kind::StringValue("hi".into()))
        );
        let err = bytes_value(b"ok\xff").unwrap_err();
        assert_eq!(err.position, 2);
        assert_eq!(
            err.to_string(),
            "'utf-8' codec can't decode byte 0xff in position 2: invalid start byte"
        );
    }

    #[test]
    fn structures_round_trip() {
        let j = json!({"voltage": 5.0, "current": 2.0, "tags": ["a", null, true], "n": {}});
        assert_eq!(
            from_proto(&to_proto(&j)),
            json!({"voltage": 5, "current": 2, "tags": ["a", null, true], "n": {}})
        );
        assert_eq!(
            from_proto_owned(into_proto(j.clone())),
            from_proto(&to_proto(&j))
        );
    }

    fn arb_json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<u64>().prop_map(|u| json!(u)),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| Number::from_f64(x).map_or(Json::Null, Json::Number)),
            ".{0,12}".prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                prop::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Json::Object(m.into_iter().collect())),
            ]
        })
    }

    fn arb_proto() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value {
                kind: Some(Kind::NullValue(0))
            }),
            any::<bool>().prop_map(|b| Value {
                kind: Some(Kind::BoolValue(b))
            }),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| Value {
                    kind: Some(Kind::NumberValue(x))
                }),
            ".{0,12}".prop_map(|s| Value {
                kind: Some(Kind::StringValue(s))
            }),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(|values| Value {
                    kind: Some(Kind::ListValue(ListValue { values }))
                }),
                prop::collection::btree_map(".{0,6}", inner, 0..6).prop_map(|fields| Value {
                    kind: Some(Kind::StructValue(Struct { fields }))
                }),
            ]
        })
    }

    /// Numbers compare as the doubles they become on the wire.
    fn same_on_wire(a: &Json, b: &Json) -> bool {
        match (a, b) {
            (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
            (Json::Array(x), Json::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_on_wire(a, b))
            }
            (Json::Object(x), Json::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .all(|(k, v)| y.get(k).is_some_and(|w| same_on_wire(v, w)))
            }
            _ => a == b,
        }
    }

    fn normalize_zero(v: &Value) -> Value {
        // -0.0 decodes to the integer 0 and comes back as +0.0: equal as numbers, not as bits.
        match &v.kind {
            Some(Kind::NumberValue(x)) if *x == 0.0 => Value {
                kind: Some(Kind::NumberValue(0.0)),
            },
            Some(Kind::ListValue(l)) => Value {
                kind: Some(Kind::ListValue(ListValue {
                    values: l.values.iter().map(normalize_zero).collect(),
                })),
            },
            Some(Kind::StructValue(s)) => Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: s
                        .fields
                        .iter()
                        .map(|(k, v)| (k.clone(), normalize_zero(v)))
                        .collect(),
                })),
            },
            _ => v.clone(),
        }
    }

    proptest! {
        #[test]
        fn proto_json_proto_is_lossless(v in arb_proto()) {
            let back = to_proto(&from_proto(&v));
            prop_assert_eq!(normalize_zero(&back), normalize_zero(&v));
            // The owned variants agree with the borrowing ones.
            prop_assert_eq!(into_proto(from_proto_owned(v.clone())), back);
        }

        #[test]
        fn json_proto_json_keeps_wire_meaning(j in arb_json()) {
            let back = from_proto(&to_proto(&j));
            prop_assert!(same_on_wire(&j, &back), "{} became {}", j, back);
        }

        #[test]
        fn encoded_values_decode_as_protobuf(j in arb_json()) {
            let bytes = to_proto(&j).encode_to_vec();
            let decoded = Value::decode(bytes.as_slice()).unwrap();
            prop_assert_eq!(decoded, to_proto(&j));
        }

        #[test]
        fn any_double_decodes_to_the_same_double(x in any::<f64>()) {
            let j = json_number(x);
            if x.is_finite() {
                prop_assert_eq!(j.as_f64(), Some(x));
            } else {
                prop_assert_eq!(j, Json::Null);
            }
        }
    }
}
