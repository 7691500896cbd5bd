//! Hostile input for the `google.protobuf.Value` <-> JSON codec: arbitrary values (deeply
//! nested too), arbitrary bytes off the wire, and values nested past what protobuf decoding
//! accepts. Test names contain `hostile`; a long run is
//! `PROPTEST_CASES=100000 cargo test -p jumpstarter-protocol hostile`.

use jumpstarter_protocol::value::{from_proto, from_proto_owned, into_proto, to_proto};
use proptest::prelude::*;
use prost::Message;
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};

/// Nesting of values built in tests (deeper than protobuf decoding accepts: see below).
const WIRE_DEPTH: usize = 100;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value { kind: None }),
        any::<i32>().prop_map(|n| Value {
            kind: Some(Kind::NullValue(n))
        }),
        any::<bool>().prop_map(|b| Value {
            kind: Some(Kind::BoolValue(b))
        }),
        // Every double, NaN and infinities included.
        any::<f64>().prop_map(|x| Value {
            kind: Some(Kind::NumberValue(x))
        }),
        prop_oneof![
            Just(-0.0f64),
            Just(9_007_199_254_740_993.0),
            Just(1.8e19),
            Just(-9.3e18)
        ]
        .prop_map(|x| Value {
            kind: Some(Kind::NumberValue(x))
        }),
        "\\PC{0,16}".prop_map(|s| Value {
            kind: Some(Kind::StringValue(s))
        }),
    ]
}

fn arb_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(8, 128, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(|values| Value {
                kind: Some(Kind::ListValue(ListValue { values }))
            }),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..8).prop_map(|fields| Value {
                kind: Some(Kind::StructValue(Struct { fields }))
            }),
        ]
    })
}

/// A value nested `depth` levels, each level a list or a one-field struct.
fn deep_value() -> impl Strategy<Value = (Value, usize)> {
    (
        prop::collection::vec((any::<bool>(), "\\PC{0,4}"), 0..WIRE_DEPTH - 1),
        leaf(),
    )
        .prop_map(|(levels, leaf)| {
            let depth = levels.len() + 1;
            let value = levels.into_iter().fold(leaf, |inner, (list, key)| Value {
                kind: Some(if list {
                    Kind::ListValue(ListValue {
                        values: vec![inner],
                    })
                } else {
                    Kind::StructValue(Struct {
                        fields: [(key, inner)].into_iter().collect(),
                    })
                }),
            });
            (value, depth)
        })
}

/// What the codec makes of a value, as the wire sees it: no kind and every null are
/// `null_value: 0`, non-finite numbers are null, -0.0 is 0.
fn normalize(v: &Value) -> Value {
    let kind = match &v.kind {
        None | Some(Kind::NullValue(_)) => Kind::NullValue(0),
        Some(Kind::NumberValue(x)) if !x.is_finite() => Kind::NullValue(0),
        Some(Kind::NumberValue(x)) if *x == 0.0 => Kind::NumberValue(0.0),
        Some(Kind::ListValue(l)) => Kind::ListValue(ListValue {
            values: l.values.iter().map(normalize).collect(),
        }),
        Some(Kind::StructValue(s)) => Kind::StructValue(Struct {
            fields: s
                .fields
                .iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .collect(),
        }),
        Some(other) => other.clone(),
    };
    Value { kind: Some(kind) }
}

fn round_trips(v: &Value) -> Result<(), TestCaseError> {
    let json = from_proto(v);
    let back = to_proto(&json);
    prop_assert_eq!(normalize(&back), normalize(v));
    // Encoding a decoded value again changes nothing: JSON -> proto -> JSON is stable.
    prop_assert_eq!(from_proto(&back), json.clone());
    // The owned variants agree with the borrowing ones.
    prop_assert_eq!(from_proto_owned(v.clone()), json.clone());
    prop_assert_eq!(into_proto(json), back.clone());
    // What we encode, protobuf decodes to the same value, unless it nests deeper than
    // protobuf's recursion limit (every level of a Value is two messages).
    match Value::decode(back.encode_to_vec().as_slice()) {
        Ok(decoded) => prop_assert_eq!(decoded, back),
        Err(e) => prop_assert!(e.to_string().contains("recursion limit"), "{}", e),
    }
    Ok(())
}

/// The wire bytes of a value nested `depth` lists deep around a null, written without building
/// the value (which could not even be dropped without recursing that deep).
fn nested_list_bytes(depth: usize) -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn varint_len(n: usize) -> usize {
        let mut v = Vec::new();
        varint(n, &mut v);
        v.len()
    }
    // Inside out: Value(null) = 08 00; ListValue{values: [v]} = 0a len v; Value{list} = 32 len l.
    let mut value_len = vec![2usize];
    let mut list_len = Vec::with_capacity(depth);
    for _ in 0..depth {
        let inner = value_len[value_len.len() - 1];
        let list = 1 + varint_len(inner) + inner;
        list_len.push(list);
        value_len.push(1 + varint_len(list) + list);
    }
    let mut out = Vec::with_capacity(value_len[depth]);
    for level in (0..depth).rev() {
        out.push(0x32);
        varint(list_len[level], &mut out);
        out.push(0x0a);
        varint(value_len[level], &mut out);
    }
    out.extend_from_slice(&[0x08, 0x00]);
    assert_eq!(out.len(), value_len[depth]);
    out
}

#[test]
fn hostile_values_nested_past_the_wire_limit_are_refused_not_overflowed() {
    // The deepest nesting protobuf decoding accepts (prost's recursion limit).
    let deepest = (1..WIRE_DEPTH)
        .take_while(|&d| Value::decode(nested_list_bytes(d).as_slice()).is_ok())
        .last()
        .unwrap();
    assert!(deepest >= 40, "{deepest}");
    for depth in [deepest + 1, 1_000, 100_000] {
        let bytes = nested_list_bytes(depth);
        let err = Value::decode(bytes.as_slice()).unwrap_err();
        assert!(
            err.to_string().contains("recursion limit"),
            "{depth}: {err}"
        );
    }
    // Just within it, the value decodes and round-trips through JSON, byte for byte.
    let v = Value::decode(nested_list_bytes(deepest).as_slice()).unwrap();
    let json = from_proto(&v);
    assert_eq!(to_proto(&json), v);
    assert_eq!(to_proto(&json).encode_to_vec(), nested_list_bytes(deepest));
}

proptest! {
    #[test]
    fn hostile_arbitrary_values_round_trip(v in arb_value()) {
        round_trips(&v)?;
    }

    #[test]
    fn hostile_deeply_nested_values_round_trip((v, depth) in deep_value()) {
        prop_assert!(depth < WIRE_DEPTH);
        round_trips(&v)?;
    }

    #[test]
    fn hostile_wire_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = Value::decode(bytes.as_slice()) {
            round_trips(&v)?;
        }
    }

    #[test]
    fn hostile_mutated_wire_values_never_panic(
        v in arb_value(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = v.encode_to_vec();
        if !bytes.is_empty() {
            for (at, byte) in flips {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
        }
        if let Ok(v) = Value::decode(bytes.as_slice()) {
            round_trips(&v)?;
        }
    }
}
