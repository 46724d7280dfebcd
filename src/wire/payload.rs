//! Payloads: a serde value together with the codec it was encoded with.
//!
//! The typed Rust API encodes with postcard (compact, fast); the CLI and the
//! database use JSON. A handler is written once against a serde type and
//! accepts either: the worker decodes with whatever codec the payload carries
//! and encodes the result with the same one.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

/// How a payload's bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// postcard: compact binary, not self-describing (the typed API).
    Postcard,
    /// JSON text (the CLI, the database, other languages).
    Json,
}

/// A payload (a job's input or a handler's result) with its codec.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// How `bytes` are encoded.
    pub codec: Codec,
    /// The encoded value.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Payload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.codec {
            Codec::Json => write!(f, "Json({})", String::from_utf8_lossy(&self.bytes)),
            Codec::Postcard => write!(f, "Postcard({} bytes)", self.bytes.len()),
        }
    }
}

/// A value that could not be encoded into, or decoded from, a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{codec:?} payload: {message}")]
pub struct PayloadError {
    /// The codec in use.
    pub codec: Codec,
    /// What serde said.
    pub message: String,
}

impl Payload {
    /// Encode `value` with postcard.
    pub fn postcard<T: Serialize + ?Sized>(value: &T) -> Result<Payload, PayloadError> {
        Self::encode(Codec::Postcard, value)
    }

    /// Encode `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Payload, PayloadError> {
        Self::encode(Codec::Json, value)
    }

    /// A JSON payload from JSON text, checked to be valid JSON.
    pub fn json_text(text: &str) -> Result<Payload, PayloadError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| PayloadError {
            codec: Codec::Json,
            message: format!("not valid JSON: {e}"),
        })?;
        Self::json(&value)
    }

    /// Encode `value` with `codec`.
    pub fn encode<T: Serialize + ?Sized>(codec: Codec, value: &T) -> Result<Payload, PayloadError> {
        let bytes = match codec {
            Codec::Postcard => postcard::to_stdvec(value).map_err(|e| e.to_string()),
            Codec::Json => serde_json::to_vec(value).map_err(|e| e.to_string()),
        };
        bytes
            .map(|bytes| Payload { codec, bytes })
            .map_err(|message| PayloadError { codec, message })
    }

    /// Decode into `T` with the payload's own codec.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        let r = match self.codec {
            Codec::Postcard => postcard::from_bytes(&self.bytes).map_err(|e| e.to_string()),
            Codec::Json => serde_json::from_slice(&self.bytes).map_err(|e| e.to_string()),
        };
        r.map_err(|message| PayloadError {
            codec: self.codec,
            message,
        })
    }

    /// Size of the encoded value in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the encoded value is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sleep {
        secs: f64,
    }

    #[test]
    fn one_type_either_codec() {
        let v = Sleep { secs: 1.5 };
        for p in [Payload::postcard(&v).unwrap(), Payload::json(&v).unwrap()] {
            assert_eq!(p.decode::<Sleep>().unwrap(), v);
        }
        let p = Payload::json_text(r#"{"secs": 2}"#).unwrap();
        assert_eq!(p.decode::<Sleep>().unwrap(), Sleep { secs: 2.0 });
    }

    #[test]
    fn bad_input_says_what() {
        let e = Payload::json_text(r#"{"sec": 2}"#)
            .unwrap()
            .decode::<Sleep>()
            .unwrap_err();
        assert!(e.message.contains("missing field `secs`"), "{e}");
        assert!(Payload::json_text("{nope").is_err());
    }
}
