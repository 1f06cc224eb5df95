//! The small encodings DIDs are made of: lenient base64, multibase base58btc, multicodec varints,
//! multihash sha2-256, multikeys.

use base64::{
    alphabet,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use didcomm_envelope::VerKey;
use sha2::{Digest, Sha256};

use crate::{doc::PublicKey, error::KeyDecodeError};

/// Multicodec `ed25519-pub`.
pub(crate) const MULTICODEC_ED25519: u64 = 0xed;
/// Multicodec `x25519-pub`.
pub(crate) const MULTICODEC_X25519: u64 = 0xec;
/// Multicodec `json` (did:peer:4 encoded documents).
pub(crate) const MULTICODEC_JSON: u64 = 0x0200;
/// Multihash code of sha2-256.
const MULTIHASH_SHA2_256: u64 = 0x12;

const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_encode_padding(false)
    .with_decode_padding_mode(DecodePaddingMode::Indifferent);
const URL_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
const STD_LENIENT: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// base64url without padding: what JWS, did:peer:2 and connection~sig write.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_LENIENT.encode(bytes)
}

/// Decodes base64 in either alphabet, padded or not, ignoring line breaks: peers write
/// `data.base64` in the standard alphabet with padding (credo) and everything else in base64url.
pub(crate) fn b64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    // The alphabets differ only in `+/` versus `-_`; a text mixing them is refused by the
    // engine chosen.
    let engine = if compact.iter().any(|&b| b == b'-' || b == b'_') {
        &URL_LENIENT
    } else {
        &STD_LENIENT
    };
    engine.decode(compact)
}

/// Reads an unsigned LEB128 varint (multicodec), returning the value and the rest.
pub(crate) fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    // Nine bytes hold 63 bits, more than any multicodec.
    for (i, &b) in bytes.iter().enumerate().take(9) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, bytes.get(i + 1..).unwrap_or_default()));
        }
    }
    None
}

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn write_varint(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Decodes a multibase base58btc value (`z…`).
pub(crate) fn decode_multibase(text: &str) -> Result<Vec<u8>, KeyDecodeError> {
    let body = text
        .strip_prefix('z')
        .ok_or(KeyDecodeError::NotBase58Multibase)?;
    bs58::decode(body)
        .into_vec()
        .map_err(KeyDecodeError::Base58)
}

/// Encodes bytes as multibase base58btc (`z…`).
pub(crate) fn encode_multibase(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(1 + bytes.len() * 138 / 100 + 1);
    out.push('z');
    out.push_str(&bs58::encode(bytes).into_string());
    out
}

/// `z` + base58btc of a multicodec-tagged value.
fn encode_multicodec(code: u64, bytes: &[u8]) -> String {
    let mut buf = Vec::with_capacity(bytes.len() + 3);
    write_varint(code, &mut buf);
    buf.extend_from_slice(bytes);
    encode_multibase(&buf)
}

/// Decodes a multikey (`z6Mk…` Ed25519, `z6LS…` X25519).
pub(crate) fn decode_multikey(text: &str) -> Result<PublicKey, KeyDecodeError> {
    let bytes = decode_multibase(text)?;
    let (code, key) = read_varint(&bytes).ok_or(KeyDecodeError::Varint)?;
    match code {
        MULTICODEC_ED25519 => VerKey::from_bytes(key)
            .map(PublicKey::Ed25519)
            .map_err(KeyDecodeError::Ed25519),
        MULTICODEC_X25519 => x25519_bytes(key).map(PublicKey::X25519),
        other => Err(KeyDecodeError::UnexpectedMulticodec(other)),
    }
}

/// Checks that `bytes` is a 32-byte X25519 key.
pub(crate) fn x25519_bytes(bytes: &[u8]) -> Result<[u8; 32], KeyDecodeError> {
    bytes.try_into().map_err(|_| KeyDecodeError::Length {
        expected: 32,
        actual: bytes.len(),
    })
}

/// The multikey of an Ed25519 key (`z6Mk…`, the did:key fingerprint).
pub(crate) fn ed25519_multikey(key: &VerKey) -> String {
    encode_multicodec(MULTICODEC_ED25519, key.as_bytes())
}

/// The multikey of an X25519 key (`z6LS…`).
pub(crate) fn x25519_multikey(key: &[u8; 32]) -> String {
    encode_multicodec(MULTICODEC_X25519, key)
}

/// Multibase base58btc of the sha2-256 multihash of `data` (`zQm…`), the hash did:peer:1 and
/// did:peer:4 use.
pub(crate) fn sha256_multihash(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut buf = Vec::with_capacity(34);
    write_varint(MULTIHASH_SHA2_256, &mut buf);
    buf.push(32);
    buf.extend_from_slice(&digest);
    encode_multibase(&buf)
}

/// Serialises a string as JSON using only characters whose base64url never contains `-` or
/// `_`.
///
/// credo-ts 0.5 validates did:peer:2 with a regex that allows only `[0-9a-zA-Z=]` in service
/// elements, so a base64url `-` or `_` makes it reject the DID. For ASCII text those two
/// appear only where a byte `>`, `?`, `~` or DEL sits at the third position of a 3-byte group,
/// and any non-ASCII byte can produce them: escaping those characters as `\uXXXX` (valid JSON,
/// decoded to the same string) keeps every base64url character in the allowed set.
pub(crate) fn peer2_json_string(text: &str, out: &mut String) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || matches!(c, '>' | '?' | '~' | '\u{7f}') || !c.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0u64,
            1,
            0x7f,
            0x80,
            0xec,
            0xed,
            0x0200,
            0x3fff,
            0x4000,
            u64::MAX >> 1,
        ] {
            let mut buf = Vec::new();
            write_varint(v, &mut buf);
            buf.push(0xaa);
            let (back, rest) = read_varint(&buf).unwrap();
            assert_eq!(back, v);
            assert_eq!(rest, [0xaa]);
        }
        let mut json = Vec::new();
        write_varint(MULTICODEC_JSON, &mut json);
        assert_eq!(json, [0x80, 0x04]);
        assert!(read_varint(&[0x80]).is_none());
        assert!(read_varint(&[]).is_none());
    }

    #[test]
    fn base64_reads_both_alphabets() {
        assert_eq!(b64_decode("+/8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(b64_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(b64_decode("-_8\n").unwrap(), [0xfb, 0xff]);
        assert!(b64_decode("+_8").is_err());
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn multikeys() {
        let did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        let vk = VerKey::parse(did).unwrap();
        assert_eq!(ed25519_multikey(&vk), &did[8..]);
        assert_eq!(decode_multikey(&did[8..]).unwrap(), PublicKey::Ed25519(vk));
        let x = x25519_multikey(&[7u8; 32]);
        assert!(x.starts_with("z6LS"), "{x}");
        assert_eq!(decode_multikey(&x).unwrap(), PublicKey::X25519([7u8; 32]));
        assert!(matches!(
            decode_multikey("6Mk"),
            Err(KeyDecodeError::NotBase58Multibase)
        ));
        assert!(matches!(
            decode_multikey("z0OIl"),
            Err(KeyDecodeError::Base58(_))
        ));
        assert!(matches!(decode_multikey("z"), Err(KeyDecodeError::Varint)));
        let secp = encode_multicodec(0xe7, &[2u8; 33]);
        assert!(matches!(
            decode_multikey(&secp),
            Err(KeyDecodeError::UnexpectedMulticodec(0xe7))
        ));
        let short = encode_multicodec(MULTICODEC_X25519, &[2u8; 31]);
        assert!(matches!(
            decode_multikey(&short),
            Err(KeyDecodeError::Length {
                expected: 32,
                actual: 31
            })
        ));
    }

    #[test]
    fn peer2_strings_never_give_dash_or_underscore() {
        for text in [
            "a?b",
            "x>y~z",
            "é ü 😀",
            "\u{7f}\n\t\"\\",
            "http://h/p?q=1&r=>~",
        ] {
            for prefix in ["", "a", "ab"] {
                let mut out = String::from(prefix);
                peer2_json_string(text, &mut out);
                let encoded = b64url(out.as_bytes());
                assert!(
                    encoded.bytes().all(|b| b.is_ascii_alphanumeric()),
                    "{text:?} -> {encoded}"
                );
                let back: String = serde_json::from_str(&out[prefix.len()..]).unwrap();
                assert_eq!(back, text);
            }
        }
    }
}
