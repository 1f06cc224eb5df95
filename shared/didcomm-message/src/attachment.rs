//! Attachment descriptors (`~attach` items and fields like `requests~attach`), Aries RFC 0017.
//!
//! Only inline content (`data.json` or `data.base64`) is read; `links` are carried but never
//! fetched, and `sha256` and `jws` are carried but not checked.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

// Agents in the wild send both alphabets, with and without padding.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// One attachment descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// Identifies the attachment within its message.
    #[serde(rename = "@id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Media type of the content.
    #[serde(rename = "mime-type", default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// A file name hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// Last modification time of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lastmod_time: Option<String>,
    /// Size of the content in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub byte_count: Option<u64>,
    /// A human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The content, or where to find it.
    pub data: AttachmentData,
}

/// The `data` block of an attachment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttachmentData {
    /// Content embedded as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Value>,
    /// Content embedded as base64, in either alphabet, padded or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
    /// URLs the content can be fetched from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    /// Hex SHA-256 of the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// A JWS over the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jws: Option<Value>,
}

/// Why an attachment's content could not be read.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// `data` has neither `json` nor `base64` (it may have only `links`, which are not fetched).
    #[error("attachment data has no inline content (no `json` or `base64`)")]
    NoInlineContent,
    /// `data.base64` is not valid base64.
    #[error("attachment data.base64 is not valid base64")]
    InvalidBase64(#[source] base64::DecodeError),
    /// The content is not JSON of the expected shape, or could not be serialised.
    #[error("attachment content is not the expected JSON")]
    Json(#[source] serde_json::Error),
}

impl Attachment {
    /// An attachment embedding `value` as `data.json`, with mime type `application/json`.
    pub fn json(id: impl Into<String>, value: Value) -> Self {
        Self::with_data(
            id,
            Some("application/json".to_owned()),
            AttachmentData {
                json: Some(value),
                ..AttachmentData::default()
            },
        )
    }

    /// An attachment embedding `bytes` as `data.base64` (standard alphabet, padded).
    pub fn base64(id: impl Into<String>, mime_type: impl Into<String>, bytes: &[u8]) -> Self {
        let mut attachment = Self::with_data(
            id,
            Some(mime_type.into()),
            AttachmentData {
                base64: Some(STANDARD.encode(bytes)),
                ..AttachmentData::default()
            },
        );
        attachment.byte_count = u64::try_from(bytes.len()).ok();
        attachment
    }

    fn with_data(id: impl Into<String>, mime_type: Option<String>, data: AttachmentData) -> Self {
        Self {
            id: Some(id.into()),
            mime_type,
            filename: None,
            lastmod_time: None,
            byte_count: None,
            description: None,
            data,
        }
    }

    /// The content as bytes: `data.base64` decoded if present, else `data.json` serialised.
    pub fn content(&self) -> Result<Vec<u8>, AttachmentError> {
        if let Some(encoded) = &self.data.base64 {
            return decode_base64(encoded);
        }
        match &self.data.json {
            Some(value) => serde_json::to_vec(value).map_err(AttachmentError::Json),
            None => Err(AttachmentError::NoInlineContent),
        }
    }

    /// The content parsed as JSON into `T`, whether it came as `data.json` or as base64 of a
    /// JSON document (DID docs and OOB requests often come the second way).
    pub fn decode_json<T: DeserializeOwned>(&self) -> Result<T, AttachmentError> {
        match (&self.data.base64, &self.data.json) {
            (None, Some(value)) => T::deserialize(value).map_err(AttachmentError::Json),
            _ => serde_json::from_slice(&self.content()?).map_err(AttachmentError::Json),
        }
    }
}

fn decode_base64(encoded: &str) -> Result<Vec<u8>, AttachmentError> {
    // Some encoders wrap lines; whitespace is never significant in base64.
    let compact: Vec<u8> = encoded
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    // The alphabets differ only in `+/` versus `-_`, so either marker picks the engine; a
    // string mixing both is then rejected by that engine.
    let engine = if compact.iter().any(|&b| b == b'-' || b == b'_') {
        &URL_SAFE_LENIENT
    } else {
        &STANDARD_LENIENT
    };
    engine
        .decode(compact)
        .map_err(AttachmentError::InvalidBase64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn with_base64(s: &str) -> Attachment {
        serde_json::from_value(json!({ "@id": "a", "data": { "base64": s } })).unwrap()
    }

    #[test]
    fn json_attachment() {
        let a = Attachment::json("att-1", json!({ "k": [1, 2] }));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({ "@id": "att-1", "mime-type": "application/json", "data": { "json": { "k": [1, 2] } } })
        );
        assert_eq!(a.content().unwrap(), br#"{"k":[1,2]}"#);
        let v: Value = a.decode_json().unwrap();
        assert_eq!(v, json!({ "k": [1, 2] }));
    }

    #[test]
    fn base64_attachment_round_trip() {
        let bytes = [0xfb, 0xff, 0x00, 0x3e, 0x3f];
        let a = Attachment::base64("att-2", "application/octet-stream", &bytes);
        assert_eq!(a.data.base64.as_deref(), Some("+/8APj8="));
        assert_eq!(a.byte_count, Some(5));
        assert_eq!(a.content().unwrap(), bytes);
        let back: Attachment = serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    #[test]
    fn base64_accepts_both_alphabets_padded_or_not() {
        let bytes = vec![0xfb, 0xff, 0x00, 0x3e, 0x3f];
        for s in ["+/8APj8=", "+/8APj8", "-_8APj8=", "-_8APj8", "+/8A\nPj8="] {
            assert_eq!(with_base64(s).content().unwrap(), bytes, "{s:?}");
        }
        assert_eq!(with_base64("").content().unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn bad_base64_is_a_typed_error() {
        for s in ["+_8APj8=", "not base64!", "A"] {
            assert!(
                matches!(
                    with_base64(s).content(),
                    Err(AttachmentError::InvalidBase64(_))
                ),
                "{s:?}"
            );
        }
    }

    #[test]
    fn empty_or_links_only_data_is_a_typed_error() {
        let empty: Attachment = serde_json::from_value(json!({ "data": {} })).unwrap();
        assert!(matches!(
            empty.content(),
            Err(AttachmentError::NoInlineContent)
        ));
        let links: Attachment = serde_json::from_value(
            json!({ "data": { "links": ["https://example.com/x"], "sha256": "00" } }),
        )
        .unwrap();
        assert!(matches!(
            links.decode_json::<Value>(),
            Err(AttachmentError::NoInlineContent)
        ));
    }

    #[test]
    fn decode_json_from_base64() {
        let a = Attachment::base64("d", "application/json", br#"{"id":"did:peer:1"}"#);
        let v: Value = a.decode_json().unwrap();
        assert_eq!(v, json!({ "id": "did:peer:1" }));
        let not_json = Attachment::base64("d", "text/plain", b"hello");
        assert!(matches!(
            not_json.decode_json::<Value>(),
            Err(AttachmentError::Json(_))
        ));
    }

    #[test]
    fn all_rfc_0017_fields_parse() {
        let value = json!({
            "@id": "x",
            "mime-type": "image/png",
            "filename": "a.png",
            "lastmod_time": "2018-12-24 18:24:07Z",
            "byte_count": 1234,
            "description": "a picture",
            "data": {
                "links": ["https://example.com/a.png"],
                "sha256": "1d4db525c5ee4a2d42899040cd3728c0f0945faf9eb668b53d99c002123f1ffa",
                "jws": { "header": { "kid": "did:key:z6Mk" }, "protected": "e30", "signature": "c2ln" }
            }
        });
        let a: Attachment = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(a.byte_count, Some(1234));
        assert_eq!(serde_json::to_value(&a).unwrap(), value);
    }
}
