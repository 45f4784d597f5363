//! A request's JSON body, read field by field: each field that is
//! missing, of the wrong type or out of range is an error naming it, and so
//! is a field the endpoint does not take (a typo must not be ignored).

use serde_json::{Map, Value};

use crate::tracker::site::MAX_FACTOR;

/// Why a body was refused: one line naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError(pub String);

fn wrong(field: &str, what: &str) -> FieldError {
    FieldError(format!("{field}: {what}"))
}

/// A JSON object body.
pub struct Body {
    fields: Map<String, Value>,
}

impl Body {
    /// The body as an object with only `allowed` fields (an empty body is
    /// an empty object).
    pub fn parse(bytes: &[u8], allowed: &[&str]) -> Result<Body, FieldError> {
        if bytes.trim_ascii().is_empty() {
            return Ok(Body { fields: Map::new() });
        }
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| FieldError(format!("body: not JSON ({e})")))?;
        let Value::Object(fields) = value else {
            return Err(FieldError("body: must be a JSON object".into()));
        };
        if let Some(extra) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(wrong(
                extra,
                &format!("unknown field; this endpoint takes {allowed:?}"),
            ));
        }
        Ok(Body { fields })
    }

    /// A boolean, `default` when absent.
    pub fn flag(&self, field: &str, default: bool) -> Result<bool, FieldError> {
        match self.fields.get(field) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(wrong(field, "must be true or false")),
        }
    }

    /// A factor, 0 to `MAX_FACTOR`; `default` when absent.
    pub fn factor(&self, field: &str, default: f64) -> Result<f64, FieldError> {
        match self.fields.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|f| (0.0..=MAX_FACTOR).contains(f))
                .ok_or_else(|| wrong(field, &format!("must be a number from 0 to {MAX_FACTOR}"))),
        }
    }

    /// A string that must be there.
    pub fn text(&self, field: &str) -> Result<&str, FieldError> {
        match self.fields.get(field) {
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(wrong(field, "must be a string")),
            None => Err(wrong(field, "is required")),
        }
    }

    /// Unix seconds or null, which must be there.
    pub fn until(&self, field: &str) -> Result<Option<u64>, FieldError> {
        match self.fields.get(field) {
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| wrong(field, "must be unix seconds (an integer) or null")),
            None => Err(wrong(
                field,
                "is required (unix seconds, or null for no end)",
            )),
        }
    }
}

/// 40 hex digits as an info hash.
pub fn info_hash(field: &str, hex: &str) -> Result<[u8; 20], FieldError> {
    let bad = || wrong(field, "must be 40 hex digits");
    if hex.len() != 40 {
        return Err(bad());
    }
    let mut out = [0u8; 20];
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| bad())?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| bad())?;
    }
    Ok(out)
}

/// An info hash as 40 lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_field_is_named() {
        let allowed = &["enabled", "download_factor", "info_hash", "until"];
        let e = |raw: &str| Body::parse(raw.as_bytes(), allowed).err().map(|e| e.0);
        assert!(
            e("{\"enabeld\": true}")
                .unwrap()
                .starts_with("enabeld: unknown field")
        );
        assert!(e("[1]").unwrap().contains("JSON object"));
        assert!(e("{").unwrap().starts_with("body: not JSON"));
        let b = Body::parse(
            br#"{"enabled": 1, "download_factor": 101, "until": -5}"#,
            allowed,
        );
        let b = b.unwrap();
        assert!(
            b.flag("enabled", true)
                .unwrap_err()
                .0
                .starts_with("enabled:")
        );
        assert!(
            b.factor("download_factor", 1.0)
                .unwrap_err()
                .0
                .starts_with("download_factor:")
        );
        assert!(b.until("until").unwrap_err().0.starts_with("until:"));
        assert!(b.text("info_hash").unwrap_err().0.contains("required"));
        let empty = Body::parse(b"", allowed).unwrap();
        assert_eq!(
            (empty.flag("enabled", true), empty.factor("x", 2.0)),
            (Ok(true), Ok(2.0))
        );
        assert_eq!(
            Body::parse(br#"{"until": null}"#, allowed)
                .unwrap()
                .until("until"),
            Ok(None)
        );
    }

    #[test]
    fn info_hashes_are_forty_hex_digits() {
        let h = "00112233445566778899aabbccddeeff0011AABB";
        assert_eq!(hex(&info_hash("h", h).unwrap()), h.to_lowercase());
        assert!(info_hash("h", &h[..39]).is_err());
        assert!(info_hash("h", &h.replace('0', "g")).is_err());
        assert!(info_hash("h", "é0112233445566778899aabbccddeeff0011AAB").is_err());
    }
}
