//! Base64 as peers actually write it.
//!
//! RFC 0019 says base64url, and we always write base64url without padding (what ACA-Py and
//! credo-ts write). On reading, agents in the field also send padding and occasionally the standard
//! alphabet, so decoding accepts both alphabets, padded or not.

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};

use crate::error::EnvelopeError;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// Encodes as base64url without padding.
// Hot path: every envelope packed (SIMD: base64-simd; `cargo bench -p didcomm-envelope --bench
// envelope` measures the pack it is part of).
pub(crate) fn encode(bytes: &[u8]) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes)
}

/// Encodes as base64url without padding, appending to `out`.
pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
    base64_simd::URL_SAFE_NO_PAD.encode_append(bytes, out);
}

/// Decodes base64url or standard base64, padded or not, into `out` (cleared first).
pub(crate) fn decode_into(
    text: &str,
    field: &'static str,
    out: &mut Vec<u8>,
) -> Result<(), EnvelopeError> {
    out.clear();
    // What peers write nearly always: base64url without padding, decoded with SIMD. Anything
    // else (padding, the standard alphabet, garbage) takes the lenient path, which also names
    // the error.
    if base64_simd::URL_SAFE_NO_PAD
        .decode_append(text.as_bytes(), &mut *out)
        .is_ok()
    {
        return Ok(());
    }
    out.clear();
    let engine = if text.bytes().any(|b| b == b'+' || b == b'/') {
        &STD_LENIENT
    } else {
        &URL_LENIENT
    };
    engine
        .decode_vec(text, out)
        .map_err(|source| EnvelopeError::Base64 { field, source })
}

/// Decodes base64url or standard base64, padded or not.
pub(crate) fn decode(text: &str, field: &'static str) -> Result<Vec<u8>, EnvelopeError> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4 + 3);
    decode_into(text, field, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn encodes_as_the_base64_crate_does() {
        for len in 0..200usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let mut appended = String::from("x");
            encode_into(&bytes, &mut appended);
            assert_eq!(encode(&bytes), URL_LENIENT.encode(&bytes), "{len} bytes");
            assert_eq!(
                appended[1..],
                URL_LENIENT.encode(&bytes),
                "{len} bytes appended"
            );
        }
    }

    #[test]
    fn decodes_as_the_base64_crate_does() {
        for len in 0..200usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 41 + len) as u8).collect();
            for text in [URL_LENIENT.encode(&bytes), STD_LENIENT.encode(&bytes)] {
                assert_eq!(decode(&text, "t").unwrap(), bytes, "{text}");
                let padded = format!("{text}{}", "=".repeat((4 - text.len() % 4) % 4));
                assert_eq!(decode(&padded, "t").unwrap(), bytes, "{padded}");
            }
        }
    }

    #[test]
    fn accepts_both_alphabets_with_or_without_padding() {
        let bytes = [0xfbu8, 0xff, 0xfe, 0x01];
        for text in ["-__-AQ", "-__-AQ==", "+//+AQ", "+//+AQ=="] {
            assert_eq!(decode(text, "t").unwrap(), bytes, "{text}");
        }
        assert_eq!(encode(&bytes), "-__-AQ");
    }

    #[test]
    fn rejects_garbage_naming_the_field() {
        let err = decode("ab$d", "iv").unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Base64 { field: "iv", .. }),
            "{err:?}"
        );
    }
}
