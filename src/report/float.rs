//! Floats in `report.json` that need not be finite.
//!
//! JSON has no NaN or infinity, and serde_json writes them as `null`, which does not
//! read back as a number: a ratio over a zero time would make the whole report
//! unreadable. Finite values are written as numbers, the others as the strings `"NaN"`,
//! `"inf"` and `"-inf"`. Reading also takes `null` as NaN, as schema 1 wrote every
//! non-finite value.
//!
//! Use with `#[serde(with = "crate::report::float")]` on an `f64`, `float::option` on
//! an `Option<f64>` and `float::pair` on an `Option<(f64, f64)>`.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;

/// A float as JSON.
pub fn to_json(value: f64) -> Value {
    match serde_json::Number::from_f64(value) {
        Some(number) => Value::Number(number),
        None => Value::String(text_of(value).to_owned()),
    }
}

/// A float from JSON, as [`to_json`] writes it (or `null`, read as NaN).
pub fn from_json(value: &Value) -> Result<f64, String> {
    match value {
        Value::Number(number) => number.as_f64().ok_or_else(|| format!("{number} is not a float")),
        Value::Null => Ok(f64::NAN),
        Value::String(text) => match text.as_str() {
            "NaN" => Ok(f64::NAN),
            "inf" => Ok(f64::INFINITY),
            "-inf" => Ok(f64::NEG_INFINITY),
            _ => Err(format!("invalid float \"{text}\", expected a number, \"NaN\", \"inf\" or \"-inf\"")),
        },
        other => Err(format!("invalid float {other}, expected a number, \"NaN\", \"inf\" or \"-inf\"")),
    }
}

fn text_of(value: f64) -> &'static str {
    if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() { serializer.serialize_f64(*value) } else { serializer.serialize_str(text_of(*value)) }
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    from_json(&Value::deserialize(deserializer)?).map_err(D::Error::custom)
}

/// `Option<f64>`: `None` is `null`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => super::serialize(value, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Null => Ok(None),
            value => from_json(&value).map(Some).map_err(D::Error::custom),
        }
    }
}

/// `Option<(f64, f64)>`, an interval: `[low, high]`, or `null`.
pub mod pair {
    use serde::Serialize;

    use super::*;

    pub fn serialize<S: Serializer>(value: &Option<(f64, f64)>, serializer: S) -> Result<S::Ok, S::Error> {
        value.map(|(low, high)| [to_json(low), to_json(high)]).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<(f64, f64)>, D::Error> {
        match Option::<[Value; 2]>::deserialize(deserializer)? {
            Some([low, high]) => {
                Ok(Some((from_json(&low).map_err(D::Error::custom)?, from_json(&high).map_err(D::Error::custom)?)))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::{Value, json};

    use super::{from_json, to_json};

    #[derive(Debug, Serialize, Deserialize)]
    struct Floats {
        #[serde(with = "super")]
        value: f64,
        #[serde(with = "super::option")]
        maybe: Option<f64>,
        #[serde(with = "super::pair")]
        interval: Option<(f64, f64)>,
    }

    #[test]
    fn non_finite_values_are_written_as_strings_and_read_back() {
        for (value, written) in [(-2.5, json!(-2.5)), (f64::INFINITY, json!("inf")), (f64::NEG_INFINITY, json!("-inf"))]
        {
            assert_eq!(to_json(value), written);
            assert_eq!(from_json(&written), Ok(value));
        }
        assert_eq!(to_json(f64::NAN), json!("NaN"));
        assert!(from_json(&json!("NaN")).unwrap().is_nan());
        // Schema 1 wrote every non-finite value as null.
        assert!(from_json(&Value::Null).unwrap().is_nan());
        assert!(from_json(&json!("Infinity")).unwrap_err().starts_with("invalid float \"Infinity\""));
        assert!(from_json(&json!(true)).is_err());
        let floats = Floats { value: f64::NEG_INFINITY, maybe: Some(f64::NAN), interval: Some((0.5, f64::INFINITY)) };
        let text = serde_json::to_string(&floats).unwrap();
        assert_eq!(text, r#"{"value":"-inf","maybe":"NaN","interval":[0.5,"inf"]}"#);
        let back: Floats = serde_json::from_str(&text).unwrap();
        assert!(back.value == f64::NEG_INFINITY && back.maybe.unwrap().is_nan());
        assert_eq!(back.interval, Some((0.5, f64::INFINITY)));
        // An absent value stays absent; a null number of schema 1 is NaN.
        let back: Floats = serde_json::from_str(r#"{"value":null,"maybe":null,"interval":null}"#).unwrap();
        assert!(back.value.is_nan() && back.maybe.is_none() && back.interval.is_none());
    }
}
