//! RFC 0019 encryption envelopes: pack and unpack.
//!
//! Wire format (Aries RFC 0019, a JWE in JSON serialisation):
//! `{"protected": b64url(header), "iv": …, "ciphertext": …, "tag": …}` where the header is
//! `{"enc", "typ": "JWM/1.0", "alg": "Anoncrypt"|"Authcrypt", "recipients": [{"encrypted_key",
//! "header": {"kid", "sender"?, "iv"?}}]}` and the AAD of the content encryption is the base64url
//! text of `protected`.
//!
//! Content encryption. Every deployed agent (ACA-Py, credo-ts, libindy before them) encrypts with
//! ChaCha20-Poly1305 (12-byte nonce) while labelling it `"enc": "xchacha20poly1305_ietf"`, and
//! their unpack ignores `enc`. So: we pack [`ContentEnc::C20P`] by default with that label, which
//! they can all read; [`ContentEnc::XC20P`] (24-byte nonce) is available for peers that implement
//! it. On unpack the nonce length decides between the two for the ambiguous legacy label, and the
//! explicit labels `chacha20poly1305_ietf`/`C20P` and `XC20P` must match their nonce length.
//!
//! Key wrapping. Anoncrypt: the content key is sealed (libsodium `crypto_box_seal`) to each
//! recipient's X25519 key. Authcrypt: the sender's base58 verkey is sealed into `sender`, and the
//! content key is `crypto_box`ed from the sender's X25519 key with a random nonce in `iv`.
//!
//! Unpack is on the mediator's hot path (every Forward): it decodes the ciphertext once into the
//! buffer that becomes the plaintext and decrypts in place; nothing is copied twice.

use std::borrow::Cow;

use askar_crypto::{
    alg::chacha20::{Chacha20Key, C20P, XC20P},
    encrypt::{
        crypto_box::{crypto_box, crypto_box_open, crypto_box_seal, crypto_box_seal_open},
        KeyAeadInPlace,
    },
    random::fill_random,
    repr::KeySecretBytes,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{
    b64,
    error::EnvelopeError,
    keys::{KeyPair, VerKey},
};

/// The `enc` label that RFC 0019 and every deployed agent write.
pub const ENC_LABEL: &str = "xchacha20poly1305_ietf";
const TYP: &str = "JWM/1.0";
const TAG_LENGTH: usize = 16;
const CEK_LENGTH: usize = 32;
const CBOX_NONCE_LENGTH: usize = 24;

/// The content encryption of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentEnc {
    /// ChaCha20-Poly1305 (IETF, 12-byte nonce): what ACA-Py and credo-ts produce and expect.
    #[default]
    C20P,
    /// XChaCha20-Poly1305 (24-byte nonce).
    XC20P,
}

impl ContentEnc {
    fn nonce_length(self) -> usize {
        match self {
            Self::C20P => 12,
            Self::XC20P => 24,
        }
    }

    /// Resolves the label and nonce length of a received envelope.
    fn resolve(label: &str, nonce_len: usize) -> Result<Self, EnvelopeError> {
        let enc = match (label, nonce_len) {
            (ENC_LABEL, 12) | ("chacha20poly1305_ietf" | "C20P", 12) => Self::C20P,
            (ENC_LABEL, 24) | ("XC20P", 24) => Self::XC20P,
            (ENC_LABEL | "chacha20poly1305_ietf" | "C20P" | "XC20P", len) => {
                return Err(EnvelopeError::BadNonce {
                    enc: label.to_owned(),
                    len,
                })
            }
            _ => return Err(EnvelopeError::UnsupportedEnc(label.to_owned())),
        };
        Ok(enc)
    }
}

/// Anoncrypt (sender anonymous) or Authcrypt (sender authenticated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// The sender is anonymous.
    Anoncrypt,
    /// The sender's verkey is encrypted for each recipient and authenticated by `crypto_box`.
    Authcrypt,
}

impl Alg {
    fn as_str(self) -> &'static str {
        match self {
            Self::Anoncrypt => "Anoncrypt",
            Self::Authcrypt => "Authcrypt",
        }
    }
}

/// The outer JSON of an envelope. Fields borrow from the input where JSON allows (no escapes).
#[derive(Deserialize)]
struct JweJson<'a> {
    #[serde(borrow)]
    protected: Cow<'a, str>,
    #[serde(borrow)]
    iv: Cow<'a, str>,
    #[serde(borrow)]
    ciphertext: Cow<'a, str>,
    #[serde(borrow)]
    tag: Cow<'a, str>,
}

#[derive(Deserialize, Serialize)]
struct ProtectedHeader<'a> {
    #[serde(borrow)]
    enc: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow)]
    recipients: Vec<RecipientJson<'a>>,
}

#[derive(Deserialize, Serialize)]
struct RecipientJson<'a> {
    #[serde(borrow)]
    encrypted_key: Cow<'a, str>,
    #[serde(borrow)]
    header: RecipientHeader<'a>,
}

#[derive(Deserialize, Serialize)]
struct RecipientHeader<'a> {
    #[serde(borrow)]
    kid: Cow<'a, str>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    sender: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    iv: Option<Cow<'a, str>>,
}

/// One recipient entry of a parsed envelope.
#[derive(Debug, Clone)]
pub struct Recipient {
    /// The recipient's key as the envelope names it (a base58 verkey).
    pub kid: String,
    encrypted_key: String,
    sender: Option<String>,
    iv: Option<String>,
}

/// A parsed, not yet decrypted envelope. Parse once, choose the recipient key you hold among
/// [`Envelope::recipients`], then [`Envelope::open`] it.
#[derive(Debug)]
pub struct Envelope {
    protected_b64: String,
    alg: Alg,
    enc: ContentEnc,
    recipients: Vec<Recipient>,
    iv: Vec<u8>,
    /// Ciphertext with the tag appended: the buffer that is decrypted in place.
    sealed: Vec<u8>,
}

/// What unpack yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// The plaintext (the DIDComm message JSON).
    pub message: Vec<u8>,
    /// Our key that the envelope was opened with.
    pub recipient: VerKey,
    /// The authenticated sender (authcrypt); `None` for anoncrypt.
    pub sender: Option<VerKey>,
}

impl Envelope {
    /// Parses the envelope JSON and its protected header, and checks its structure.
    // Hot path: one call per inbound message.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let jwe: JweJson<'_> = serde_json::from_slice(bytes).map_err(EnvelopeError::Json)?;
        let header_bytes = b64::decode(&jwe.protected, "protected")?;
        let header: ProtectedHeader<'_> =
            serde_json::from_slice(&header_bytes).map_err(EnvelopeError::ProtectedHeader)?;

        let alg = match &*header.alg {
            "Anoncrypt" => Alg::Anoncrypt,
            "Authcrypt" => Alg::Authcrypt,
            other => return Err(EnvelopeError::UnsupportedAlg(other.to_owned())),
        };
        if header.recipients.is_empty() {
            return Err(EnvelopeError::NoRecipients);
        }
        let iv = b64::decode(&jwe.iv, "iv")?;
        let enc = ContentEnc::resolve(&header.enc, iv.len())?;

        let mut sealed = Vec::with_capacity(jwe.ciphertext.len() * 3 / 4 + 3 + TAG_LENGTH);
        b64::decode_into(&jwe.ciphertext, "ciphertext", &mut sealed)?;
        let tag = b64::decode(&jwe.tag, "tag")?;
        if tag.len() != TAG_LENGTH {
            return Err(EnvelopeError::BadTagLength(tag.len()));
        }
        sealed.extend_from_slice(&tag);

        let recipients = header
            .recipients
            .into_iter()
            .map(|r| Recipient {
                kid: r.header.kid.into_owned(),
                encrypted_key: r.encrypted_key.into_owned(),
                sender: r.header.sender.map(Cow::into_owned),
                iv: r.header.iv.map(Cow::into_owned),
            })
            .collect();
        Ok(Self {
            protected_b64: jwe.protected.into_owned(),
            alg,
            enc,
            recipients,
            iv,
            sealed,
        })
    }

    /// Anoncrypt or Authcrypt.
    pub fn alg(&self) -> Alg {
        self.alg
    }

    /// The content encryption.
    pub fn enc(&self) -> ContentEnc {
        self.enc
    }

    /// The recipient entries, in envelope order.
    pub fn recipients(&self) -> &[Recipient] {
        &self.recipients
    }

    /// Decrypts the envelope with `key`, which must be one of its recipients.
    // Hot path: one call per inbound message.
    pub fn open(self, key: &KeyPair) -> Result<Unpacked, EnvelopeError> {
        let ours = key.verkey_base58();
        let entry = self
            .recipients
            .iter()
            .find(|r| kid_matches(&r.kid, ours, key.verkey()))
            .ok_or_else(|| {
                EnvelopeError::NoMatchingRecipient(
                    self.recipients.iter().map(|r| r.kid.clone()).collect(),
                )
            })?;
        let (cek, sender) = unwrap_cek(self.alg, entry, key)?;
        let mut buffer = self.sealed;
        match self.enc {
            ContentEnc::C20P => decrypt::<C20P>(&cek, &mut buffer, &self.iv, &self.protected_b64)?,
            ContentEnc::XC20P => {
                decrypt::<XC20P>(&cek, &mut buffer, &self.iv, &self.protected_b64)?
            }
        }
        Ok(Unpacked {
            message: buffer,
            recipient: *key.verkey(),
            sender,
        })
    }
}

/// A `kid` names our key if it is our base58 verkey (the RFC 0019 form) or, leniently, its
/// did:key form.
fn kid_matches(kid: &str, ours_b58: &str, ours: &VerKey) -> bool {
    kid == ours_b58 || (kid.starts_with("did:key:") && VerKey::from_did_key(kid).ok() == Some(*ours))
}

fn unwrap_cek(
    alg: Alg,
    entry: &Recipient,
    key: &KeyPair,
) -> Result<(Zeroizing<Vec<u8>>, Option<VerKey>), EnvelopeError> {
    let encrypted_key = b64::decode(&entry.encrypted_key, "encrypted_key")?;
    let (cek, sender) = match (alg, &entry.sender, &entry.iv) {
        (Alg::Anoncrypt, None, None) => {
            let cek = crypto_box_seal_open(key.x25519(), &encrypted_key)
                .map_err(EnvelopeError::KeyUnwrap)?;
            (Zeroizing::new(cek.as_ref().to_vec()), None)
        }
        (Alg::Authcrypt, Some(sender), Some(iv)) => {
            let sealed_sender = b64::decode(sender, "sender")?;
            let nonce = b64::decode(iv, "recipient iv")?;
            let sender_b58 = crypto_box_seal_open(key.x25519(), &sealed_sender)
                .map_err(EnvelopeError::KeyUnwrap)?;
            let sender_text = std::str::from_utf8(sender_b58.as_ref())
                .map_err(|_| EnvelopeError::BadSender(crate::KeyError::NotOnCurve))
                .and_then(|t| VerKey::from_base58(t).map_err(EnvelopeError::BadSender))?;
            let sender_x = sender_text.to_x25519().map_err(EnvelopeError::BadSender)?;
            let mut cek = Zeroizing::new(encrypted_key);
            crypto_box_open(key.x25519(), &sender_x, &mut *cek, &nonce)
                .map_err(EnvelopeError::KeyUnwrap)?;
            (cek, Some(sender_text))
        }
        (Alg::Anoncrypt, ..) => {
            return Err(EnvelopeError::RecipientHeaderMismatch {
                alg: "Anoncrypt",
                reason: "anoncrypt recipient carries `sender` or `iv`",
            })
        }
        (Alg::Authcrypt, ..) => {
            return Err(EnvelopeError::RecipientHeaderMismatch {
                alg: "Authcrypt",
                reason: "authcrypt recipient lacks `sender` or `iv`",
            })
        }
    };
    if cek.len() != CEK_LENGTH {
        return Err(EnvelopeError::BadContentKey(cek.len()));
    }
    Ok((cek, sender))
}

fn decrypt<T: askar_crypto::alg::chacha20::Chacha20Type>(
    cek: &[u8],
    buffer: &mut Vec<u8>,
    nonce: &[u8],
    aad: &str,
) -> Result<(), EnvelopeError> {
    let key = Chacha20Key::<T>::from_secret_bytes(cek).map_err(EnvelopeError::Decrypt)?;
    key.decrypt_in_place(buffer, nonce, aad.as_bytes())
        .map_err(EnvelopeError::Decrypt)
}

/// Parses and opens an envelope with the first recipient key that `find` returns for a `kid`.
/// `find` receives each `kid` as written in the envelope (base58, or did:key from lax senders).
pub fn unpack<'k>(
    bytes: &[u8],
    mut find: impl FnMut(&str) -> Option<&'k KeyPair>,
) -> Result<Unpacked, EnvelopeError> {
    let envelope = Envelope::parse(bytes)?;
    let key = envelope
        .recipients
        .iter()
        .find_map(|r| find(&r.kid))
        .ok_or_else(|| {
            EnvelopeError::NoMatchingRecipient(
                envelope.recipients.iter().map(|r| r.kid.clone()).collect(),
            )
        })?;
    envelope.open(key)
}

/// Packs `message` for `recipients` (one envelope any of them can open): authcrypt when `sender`
/// is given, anoncrypt otherwise.
pub fn pack(
    message: &[u8],
    recipients: &[VerKey],
    sender: Option<&KeyPair>,
    enc: ContentEnc,
) -> Result<Vec<u8>, EnvelopeError> {
    if recipients.is_empty() {
        return Err(EnvelopeError::PackNoRecipients);
    }
    let mut cek_bytes = Zeroizing::new([0u8; CEK_LENGTH]);
    fill_random(&mut cek_bytes[..]);

    let mut entries = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        let target_x = recipient.to_x25519().map_err(|source| EnvelopeError::BadRecipientKid {
            kid: recipient.to_base58(),
            source,
        })?;
        let entry = match sender {
            None => {
                let sealed =
                    crypto_box_seal(&target_x, &cek_bytes[..]).map_err(EnvelopeError::Encrypt)?;
                RecipientJson {
                    encrypted_key: Cow::Owned(b64::encode(sealed.as_ref())),
                    header: RecipientHeader {
                        kid: Cow::Owned(recipient.to_base58()),
                        sender: None,
                        iv: None,
                    },
                }
            }
            Some(sender) => {
                let sealed_sender = crypto_box_seal(&target_x, sender.verkey_base58().as_bytes())
                    .map_err(EnvelopeError::Encrypt)?;
                let mut nonce = [0u8; CBOX_NONCE_LENGTH];
                fill_random(&mut nonce);
                let mut boxed = cek_bytes.to_vec();
                crypto_box(&target_x, sender.x25519(), &mut boxed, &nonce)
                    .map_err(EnvelopeError::Encrypt)?;
                RecipientJson {
                    encrypted_key: Cow::Owned(b64::encode(&boxed)),
                    header: RecipientHeader {
                        kid: Cow::Owned(recipient.to_base58()),
                        sender: Some(Cow::Owned(b64::encode(sealed_sender.as_ref()))),
                        iv: Some(Cow::Owned(b64::encode(&nonce))),
                    },
                }
            }
        };
        entries.push(entry);
    }

    let alg = if sender.is_some() {
        Alg::Authcrypt
    } else {
        Alg::Anoncrypt
    };
    let header = ProtectedHeader {
        enc: Cow::Borrowed(ENC_LABEL),
        typ: Some(Cow::Borrowed(TYP)),
        alg: Cow::Borrowed(alg.as_str()),
        recipients: entries,
    };
    let header_json = serde_json::to_vec(&header).map_err(EnvelopeError::ProtectedHeader)?;
    let protected = b64::encode(&header_json);

    let mut nonce = [0u8; 24];
    let nonce = &mut nonce[..enc.nonce_length()];
    fill_random(nonce);
    let mut buffer = Vec::with_capacity(message.len() + TAG_LENGTH);
    buffer.extend_from_slice(message);
    let ct_len = match enc {
        ContentEnc::C20P => encrypt::<C20P>(&cek_bytes[..], &mut buffer, nonce, &protected)?,
        ContentEnc::XC20P => encrypt::<XC20P>(&cek_bytes[..], &mut buffer, nonce, &protected)?,
    };
    let (ciphertext, tag) = buffer.split_at(ct_len);

    // Written by hand rather than through serde: four known base64 members, no escaping needed.
    let mut out = String::with_capacity(protected.len() + ciphertext.len() * 4 / 3 + 128);
    out.push_str("{\"protected\":\"");
    out.push_str(&protected);
    out.push_str("\",\"iv\":\"");
    b64::encode_into(nonce, &mut out);
    out.push_str("\",\"ciphertext\":\"");
    b64::encode_into(ciphertext, &mut out);
    out.push_str("\",\"tag\":\"");
    b64::encode_into(tag, &mut out);
    out.push_str("\"}");
    Ok(out.into_bytes())
}

fn encrypt<T: askar_crypto::alg::chacha20::Chacha20Type>(
    cek: &[u8],
    buffer: &mut Vec<u8>,
    nonce: &[u8],
    aad: &str,
) -> Result<usize, EnvelopeError> {
    let key = Chacha20Key::<T>::from_secret_bytes(cek).map_err(EnvelopeError::Encrypt)?;
    key.encrypt_in_place(buffer, nonce, aad.as_bytes())
        .map_err(EnvelopeError::Encrypt)
}

