//! Pack/unpack round trips and one test per way an envelope can be wrong.
#![allow(clippy::unwrap_used)]

mod common;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use common::*;
use didcomm_envelope::{unpack, Alg, ContentEnc, Envelope, EnvelopeError, KeyPair};

fn open_with(bytes: &[u8], key: &KeyPair) -> Result<didcomm_envelope::Unpacked, EnvelopeError> {
    unpack(bytes, |kid| (kid == key.verkey_base58()).then_some(key))
}

#[test]
fn round_trips_every_mode_for_every_recipient() {
    let sender = KeyPair::generate().unwrap();
    for enc in [ContentEnc::C20P, ContentEnc::XC20P] {
        for n in [1, 3] {
            for authcrypt in [false, true] {
                let recipients = keys(n);
                let from = authcrypt.then_some(&sender);
                let bytes = packed(&recipients, from, enc);
                for r in &recipients {
                    let env = Envelope::parse(&bytes).unwrap();
                    assert_eq!(env.enc(), enc);
                    assert_eq!(env.recipients().len(), n);
                    let expected_alg = if authcrypt {
                        Alg::Authcrypt
                    } else {
                        Alg::Anoncrypt
                    };
                    assert_eq!(env.alg(), expected_alg);
                    let out = env.open(r).unwrap();
                    assert_eq!(out.message, MESSAGE);
                    assert_eq!(out.recipient, *r.verkey());
                    assert_eq!(out.sender, from.map(|s| *s.verkey()));
                }
            }
        }
    }
}

#[test]
fn header_is_what_peers_write() {
    let r = keys(1);
    let parts = Parts::of(&packed(&r, None, ContentEnc::C20P));
    assert_eq!(parts.header["enc"], "xchacha20poly1305_ietf");
    assert_eq!(parts.header["typ"], "JWM/1.0");
    assert_eq!(parts.header["alg"], "Anoncrypt");
    assert_eq!(
        parts.header["recipients"][0]["header"]["kid"],
        r[0].verkey_base58()
    );
    let iv = URL_SAFE_NO_PAD
        .decode(parts.outer["iv"].as_str().unwrap())
        .unwrap();
    assert_eq!(iv.len(), 12, "C20P is what ACA-Py and credo-ts decrypt");
}

#[test]
fn unpack_picks_the_key_we_hold_among_several() {
    let recipients = keys(3);
    let bytes = packed(&recipients, None, ContentEnc::C20P);
    let ours = &recipients[2];
    let out = unpack(&bytes, |kid| (kid == ours.verkey_base58()).then_some(ours)).unwrap();
    assert_eq!(out.recipient, *ours.verkey());
}

#[test]
fn did_key_kid_from_lax_senders_is_matched() {
    let r = keys(1);
    let mut parts = Parts::of(&packed(&r, None, ContentEnc::C20P));
    parts.header["recipients"][0]["header"]["kid"] = r[0].verkey().to_did_key().into();
    // The AAD changes with the header, so this only checks recipient matching and key unwrap.
    let err = Envelope::parse(&parts.bytes())
        .unwrap()
        .open(&r[0])
        .unwrap_err();
    assert!(matches!(err, EnvelopeError::Decrypt(_)), "{err:?}");
}

#[test]
fn tampered_ciphertext_fails_authentication() {
    let r = keys(1);
    let mut parts = Parts::of(&packed(&r, None, ContentEnc::C20P));
    flip_b64(&mut parts.outer["ciphertext"], 3);
    let err = open_with(&parts.bytes_keep_protected(), &r[0]).unwrap_err();
    assert!(matches!(err, EnvelopeError::Decrypt(_)), "{err:?}");
}

#[test]
fn tampered_tag_fails_authentication() {
    let r = keys(1);
    let mut parts = Parts::of(&packed(&r, None, ContentEnc::XC20P));
    flip_b64(&mut parts.outer["tag"], 15);
    let err = open_with(&parts.bytes_keep_protected(), &r[0]).unwrap_err();
    assert!(matches!(err, EnvelopeError::Decrypt(_)), "{err:?}");
}

#[test]
fn tampered_protected_header_fails_authentication() {
    let r = keys(1);
    let mut parts = Parts::of(&packed(&r, None, ContentEnc::C20P));
    parts.header["typ"] = "JWM/2.0".into();
    let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
    assert!(matches!(err, EnvelopeError::Decrypt(_)), "{err:?}");
}

#[test]
fn tampered_sender_fails_key_unwrap() {
    let r = keys(1);
    let s = KeyPair::generate().unwrap();
    let mut parts = Parts::of(&packed(&r, Some(&s), ContentEnc::C20P));
    flip_b64(&mut parts.header["recipients"][0]["header"]["sender"], 40);
    let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
    assert!(matches!(err, EnvelopeError::KeyUnwrap(_)), "{err:?}");
}

#[test]
fn envelope_for_someone_else_is_no_matching_recipient() {
    let r = keys(2);
    let bytes = packed(&r[..1], None, ContentEnc::C20P);
    let err = open_with(&bytes, &r[1]).unwrap_err();
    match err {
        EnvelopeError::NoMatchingRecipient(kids) => {
            assert_eq!(kids, vec![r[0].verkey_base58().to_owned()])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_key_under_our_kid_fails_key_unwrap() {
    let r = keys(2);
    let mut parts = Parts::of(&packed(&r[..1], None, ContentEnc::C20P));
    // The entry claims to be for r[1], but its content key was sealed to r[0].
    parts.header["recipients"][0]["header"]["kid"] = r[1].verkey_base58().into();
    let err = open_with(&parts.bytes(), &r[1]).unwrap_err();
    assert!(matches!(err, EnvelopeError::KeyUnwrap(_)), "{err:?}");
}

#[test]
fn truncated_json_is_truncated() {
    let r = keys(1);
    let bytes = packed(&r, None, ContentEnc::C20P);
    let err = open_with(&bytes[..bytes.len() / 2], &r[0]).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::Truncated {
                part: "envelope",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn truncated_protected_header_is_truncated() {
    let r = keys(1);
    let mut parts = Parts::of(&packed(&r, None, ContentEnc::C20P));
    let header = serde_json::to_vec(&parts.header).unwrap();
    parts.outer["protected"] = URL_SAFE_NO_PAD.encode(&header[..header.len() - 5]).into();
    let err = open_with(&parts.bytes_keep_protected(), &r[0]).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::Truncated {
                part: "protected header",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn not_json_is_malformed() {
    let r = keys(1);
    for input in [&b"hello"[..], b"[1,2]", b"{\"protected\": 5}", b"\xff\xfe"] {
        let err = open_with(input, &r[0]).unwrap_err();
        assert!(
            matches!(
                err,
                EnvelopeError::Malformed {
                    part: "envelope",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

#[test]
fn bad_base64_names_the_field() {
    let r = keys(1);
    let bytes = packed(&r, None, ContentEnc::C20P);
    for field in ["protected", "iv", "ciphertext", "tag"] {
        let mut parts = Parts::of(&bytes);
        parts.outer[field] = "not*base64!".into();
        let err = open_with(&parts.bytes_keep_protected(), &r[0]).unwrap_err();
        match err {
            EnvelopeError::Base64 { field: f, .. } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut parts = Parts::of(&bytes);
    parts.header["recipients"][0]["encrypted_key"] = "%%%".into();
    let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::Base64 {
                field: "encrypted_key",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn unknown_alg_and_enc_are_refused_by_name() {
    let r = keys(1);
    let bytes = packed(&r, None, ContentEnc::C20P);
    let mut parts = Parts::of(&bytes);
    parts.header["alg"] = "ECDH-1PU+A256KW".into();
    let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::UnsupportedAlg(a) if a == "ECDH-1PU+A256KW"),
        "{err:?}"
    );

    let mut parts = Parts::of(&bytes);
    parts.header["enc"] = "A256GCM".into();
    let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
    assert!(
        matches!(&err, EnvelopeError::UnsupportedEnc(e) if e == "A256GCM"),
        "{err:?}"
    );
}

#[test]
fn explicit_enc_labels_must_fit_the_nonce() {
    let r = keys(1);
    let c20p = packed(&r, None, ContentEnc::C20P);
    let xc20p = packed(&r, None, ContentEnc::XC20P);
    for (bytes, label, ok) in [
        (&c20p, "chacha20poly1305_ietf", true),
        (&c20p, "C20P", true),
        (&xc20p, "XC20P", true),
        (&c20p, "XC20P", false),
        (&xc20p, "C20P", false),
    ] {
        let mut parts = Parts::of(bytes);
        parts.header["enc"] = label.into();
        let result = Envelope::parse(&parts.bytes());
        if ok {
            // Parses; opening fails only because the header (the AAD) changed.
            let err = result.unwrap().open(&r[0]).unwrap_err();
            assert!(matches!(err, EnvelopeError::Decrypt(_)), "{label}: {err:?}");
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, EnvelopeError::BadNonce { .. }),
                "{label}: {err:?}"
            );
        }
    }
}

#[test]
fn missing_members_are_named() {
    let r = keys(1);
    let bytes = packed(&r, None, ContentEnc::C20P);
    for field in ["protected", "iv", "ciphertext", "tag"] {
        let mut parts = Parts::of(&bytes);
        parts.outer.as_object_mut().unwrap().remove(field);
        let err = open_with(&parts.bytes_keep_protected(), &r[0]).unwrap_err();
        match err {
            EnvelopeError::MissingField {
                part: "envelope",
                field: f,
            } => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    for field in ["alg", "enc", "recipients"] {
        let mut parts = Parts::of(&bytes);
        parts.header.as_object_mut().unwrap().remove(field);
        let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
        match err {
            EnvelopeError::MissingField {
                part: "protected header",
                field: f,
            } => {
                assert_eq!(f, field)
            }
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut parts = Parts::of(&bytes);
    parts.header["recipients"][0]["header"]
        .as_object_mut()
        .unwrap()
        .remove("kid");
    let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::MissingField {
                part: "recipient",
                field: "kid"
            }
        ),
        "{err:?}"
    );
}

#[test]
fn empty_recipient_list_is_refused() {
    let r = keys(1);
    let mut parts = Parts::of(&packed(&r, None, ContentEnc::C20P));
    parts.header["recipients"] = serde_json::json!([]);
    let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
    assert!(matches!(err, EnvelopeError::NoRecipients), "{err:?}");
}

#[test]
fn wrong_nonce_and_tag_lengths_are_refused() {
    let r = keys(1);
    let bytes = packed(&r, None, ContentEnc::C20P);
    let mut parts = Parts::of(&bytes);
    parts.outer["iv"] = URL_SAFE_NO_PAD.encode([0u8; 16]).into();
    let err = open_with(&parts.bytes_keep_protected(), &r[0]).unwrap_err();
    assert!(
        matches!(err, EnvelopeError::BadNonce { len: 16, .. }),
        "{err:?}"
    );

    let mut parts = Parts::of(&bytes);
    parts.outer["tag"] = URL_SAFE_NO_PAD.encode([0u8; 8]).into();
    let err = open_with(&parts.bytes_keep_protected(), &r[0]).unwrap_err();
    assert!(matches!(err, EnvelopeError::BadTagLength(8)), "{err:?}");
}

#[test]
fn recipient_header_must_match_alg() {
    let r = keys(1);
    let s = KeyPair::generate().unwrap();
    let mut parts = Parts::of(&packed(&r, Some(&s), ContentEnc::C20P));
    parts.header["recipients"][0]["header"]
        .as_object_mut()
        .unwrap()
        .remove("sender");
    let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::RecipientHeaderMismatch {
                alg: "Authcrypt",
                ..
            }
        ),
        "{err:?}"
    );

    let mut parts = Parts::of(&packed(&r, Some(&s), ContentEnc::C20P));
    parts.header["alg"] = "Anoncrypt".into();
    let err = open_with(&parts.bytes(), &r[0]).unwrap_err();
    assert!(
        matches!(
            err,
            EnvelopeError::RecipientHeaderMismatch {
                alg: "Anoncrypt",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn pack_needs_recipients() {
    let err = didcomm_envelope::pack(b"x", &[], None, ContentEnc::C20P).unwrap_err();
    assert!(matches!(err, EnvelopeError::PackNoRecipients), "{err:?}");
}

#[test]
fn padded_and_standard_base64_from_peers_is_read() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let r = keys(1);
    let mut parts = Parts::of(&packed(&r, None, ContentEnc::C20P));
    for field in ["iv", "ciphertext", "tag"] {
        let raw = URL_SAFE_NO_PAD
            .decode(parts.outer[field].as_str().unwrap())
            .unwrap();
        parts.outer[field] = if field == "tag" {
            STANDARD.encode(raw)
        } else {
            URL_SAFE.encode(raw)
        }
        .into();
    }
    let out = open_with(&parts.bytes_keep_protected(), &r[0]).unwrap();
    assert_eq!(out.message, MESSAGE);
}
