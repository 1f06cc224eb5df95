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
    alg::chacha20::{Chacha20Key, XC20P},
    encrypt::{
        crypto_box::{crypto_box, crypto_box_seal},
        KeyAeadInPlace,
    },
    random::fill_random,
    repr::KeySecretBytes,
};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

use crate::{
    b64,
    cache::OpenCache,
    error::{AeadError, EnvelopeError},
    keys::{KeyPair, VerKey},
};

/// The `enc` label that RFC 0019 and every deployed agent write.
pub const ENC_LABEL: &str = "xchacha20poly1305_ietf";
const TYP: &str = "JWM/1.0";
const TAG_LENGTH: usize = 16;
pub(crate) const CEK_LENGTH: usize = 32;
const CBOX_NONCE_LENGTH: usize = 24;
const BOX_TAG_LENGTH: usize = 16;

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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Anoncrypt => "Anoncrypt",
            Self::Authcrypt => "Authcrypt",
        }
    }
}

/// The outer JSON of an envelope. Fields borrow from the input where JSON allows (no escapes).
/// Every member is optional here so that a missing one gets its own error, not a serde message.
#[derive(Deserialize)]
struct JweJson<'a> {
    #[serde(borrow)]
    protected: Option<Cow<'a, str>>,
    #[serde(borrow)]
    iv: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ciphertext: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tag: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ProtectedIn<'a> {
    #[serde(borrow)]
    enc: Option<Cow<'a, str>>,
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    recipients: Option<Vec<RecipientIn<'a>>>,
}

#[derive(Deserialize)]
struct RecipientIn<'a> {
    #[serde(borrow)]
    encrypted_key: Option<Cow<'a, str>>,
    #[serde(borrow)]
    header: Option<RecipientHeaderIn<'a>>,
}

#[derive(Deserialize)]
struct RecipientHeaderIn<'a> {
    #[serde(borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(borrow)]
    sender: Option<Cow<'a, str>>,
    #[serde(borrow)]
    iv: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct ProtectedOut<'a> {
    enc: &'a str,
    typ: &'a str,
    alg: &'a str,
    recipients: Vec<RecipientOut>,
}

#[derive(Serialize)]
pub(crate) struct RecipientOut {
    pub(crate) encrypted_key: String,
    pub(crate) header: RecipientHeaderOut,
}

#[derive(Serialize)]
pub(crate) struct RecipientHeaderOut {
    pub(crate) kid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) sender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) iv: Option<String>,
}

fn json_error(part: &'static str, source: serde_json::Error) -> EnvelopeError {
    if source.is_eof() {
        EnvelopeError::Truncated { part, source }
    } else {
        EnvelopeError::Malformed { part, source }
    }
}

fn required<T>(
    value: Option<T>,
    part: &'static str,
    field: &'static str,
) -> Result<T, EnvelopeError> {
    value.ok_or(EnvelopeError::MissingField { part, field })
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

impl Recipient {
    /// The sealed sender field (authcrypt), base64 as written.
    pub fn sender(&self) -> Option<&str> {
        self.sender.as_deref()
    }

    /// The encrypted content key, base64 as written.
    pub fn encrypted_key(&self) -> &str {
        &self.encrypted_key
    }
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
        let jwe: JweJson<'_> =
            serde_json::from_slice(bytes).map_err(|e| json_error("envelope", e))?;
        let protected = required(jwe.protected, "envelope", "protected")?;
        let iv = required(jwe.iv, "envelope", "iv")?;
        let ciphertext = required(jwe.ciphertext, "envelope", "ciphertext")?;
        let tag = required(jwe.tag, "envelope", "tag")?;

        let header_bytes = b64::decode(&protected, "protected")?;
        let header: ProtectedIn<'_> =
            serde_json::from_slice(&header_bytes).map_err(|e| json_error("protected header", e))?;
        let alg_label = required(header.alg, "protected header", "alg")?;
        let enc_label = required(header.enc, "protected header", "enc")?;
        let recipients_in = required(header.recipients, "protected header", "recipients")?;

        let alg = match &*alg_label {
            "Anoncrypt" => Alg::Anoncrypt,
            "Authcrypt" => Alg::Authcrypt,
            other => return Err(EnvelopeError::UnsupportedAlg(other.to_owned())),
        };
        if recipients_in.is_empty() {
            return Err(EnvelopeError::NoRecipients);
        }
        let mut recipients = Vec::with_capacity(recipients_in.len());
        for r in recipients_in {
            let header = required(r.header, "recipient", "header")?;
            recipients.push(Recipient {
                kid: required(header.kid, "recipient", "kid")?.into_owned(),
                encrypted_key: required(r.encrypted_key, "recipient", "encrypted_key")?
                    .into_owned(),
                sender: header.sender.map(Cow::into_owned),
                iv: header.iv.map(Cow::into_owned),
            });
        }

        let iv = b64::decode(&iv, "iv")?;
        let enc = ContentEnc::resolve(&enc_label, iv.len())?;

        let mut sealed = Vec::with_capacity(ciphertext.len() * 3 / 4 + 3 + TAG_LENGTH);
        b64::decode_into(&ciphertext, "ciphertext", &mut sealed)?;
        let tag = b64::decode(&tag, "tag")?;
        if tag.len() != TAG_LENGTH {
            return Err(EnvelopeError::BadTagLength(tag.len()));
        }
        sealed.extend_from_slice(&tag);

        Ok(Self {
            protected_b64: protected.into_owned(),
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
    pub fn open(self, key: &KeyPair) -> Result<Unpacked, EnvelopeError> {
        self.open_with(key, None)
    }

    /// [`Envelope::open`], remembering in `cache` what opening envelopes from the same sender
    /// again can skip (see [`crate::cache`]).
    // Hot path: one call per inbound message.
    pub fn open_cached(self, key: &KeyPair, cache: &OpenCache) -> Result<Unpacked, EnvelopeError> {
        self.open_with(key, Some(cache))
    }

    fn open_with(
        self,
        key: &KeyPair,
        cache: Option<&OpenCache>,
    ) -> Result<Unpacked, EnvelopeError> {
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
        let (cek, sender) = unwrap_cek(self.alg, entry, key, cache)?;
        let mut buffer = self.sealed;
        match self.enc {
            ContentEnc::C20P => open_c20p(&cek, &mut buffer, &self.iv, &self.protected_b64)?,
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
    kid == ours_b58
        || (kid.starts_with("did:key:") && VerKey::from_did_key(kid).ok() == Some(*ours))
}

fn unwrap_cek(
    alg: Alg,
    entry: &Recipient,
    key: &KeyPair,
    cache: Option<&OpenCache>,
) -> Result<(Zeroizing<Vec<u8>>, Option<VerKey>), EnvelopeError> {
    let encrypted_key = b64::decode(&entry.encrypted_key, "encrypted_key")?;
    let (cek, sender) = match (alg, &entry.sender, &entry.iv) {
        (Alg::Anoncrypt, None, None) => (key.agreement().seal_open(&encrypted_key)?, None),
        (Alg::Authcrypt, Some(sender), Some(iv)) => {
            let sender_vk = match cache {
                Some(cache) => cache.sender(key, sender)?,
                None => open_sender(key, sender)?,
            };
            let nonce = b64::decode(iv, "recipient iv")?;
            let cipher = match cache {
                Some(cache) => cache.box_key(key, &sender_vk)?,
                None => {
                    std::sync::Arc::new(key.agreement().box_key(&sender_vk.to_x25519_public())?)
                }
            };
            if encrypted_key.len() < BOX_TAG_LENGTH {
                return Err(EnvelopeError::KeyUnwrap(crate::BoxError));
            }
            let (tag, boxed) = encrypted_key.split_at(BOX_TAG_LENGTH);
            let mut cek = Zeroizing::new(boxed.to_vec());
            crate::dh::open_detached(&cipher, &nonce, tag, &mut cek)?;
            (cek, Some(sender_vk))
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

/// The sender a sealed sender field (base64) names.
pub(crate) fn open_sender(key: &KeyPair, sealed_b64: &str) -> Result<VerKey, EnvelopeError> {
    let sealed = b64::decode(sealed_b64, "sender")?;
    let sender_b58 = key.agreement().seal_open(&sealed)?;
    VerKey::from_base58(&sender_b58[..]).map_err(EnvelopeError::BadSender)
}

fn decrypt<T: askar_crypto::alg::chacha20::Chacha20Type>(
    cek: &[u8],
    buffer: &mut Vec<u8>,
    nonce: &[u8],
    aad: &str,
) -> Result<(), EnvelopeError> {
    let key =
        Chacha20Key::<T>::from_secret_bytes(cek).map_err(|_| EnvelopeError::Decrypt(AeadError))?;
    key.decrypt_in_place(buffer, nonce, aad.as_bytes())
        .map_err(|_| EnvelopeError::Decrypt(AeadError))
}

/// ChaCha20-Poly1305 (IETF) with AWS-LC: 2.3x RustCrypto's on 1 KiB (`cargo bench -p
/// didcomm-envelope --bench aead`). `buffer` holds the ciphertext and its tag; the plaintext
/// is left in it.
// Hot path: every envelope a live client sends or gets.
fn open_c20p(
    cek: &[u8],
    buffer: &mut Vec<u8>,
    nonce: &[u8],
    aad: &str,
) -> Result<(), EnvelopeError> {
    let fail = |_| EnvelopeError::Decrypt(AeadError);
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, cek).map_err(fail)?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(fail)?;
    let n = key
        .open_in_place(nonce, Aad::from(aad.as_bytes()), buffer)
        .map_err(fail)?
        .len();
    buffer.truncate(n);
    Ok(())
}

/// ChaCha20-Poly1305 (IETF) with AWS-LC (see [`open_c20p`]): `buffer`'s plaintext becomes its
/// ciphertext with the tag appended.
// Hot path: every envelope packed for a live client.
fn seal_c20p(
    cek: &[u8],
    buffer: &mut Vec<u8>,
    nonce: &[u8],
    aad: &str,
) -> Result<(), EnvelopeError> {
    let fail = |_| {
        EnvelopeError::Encrypt(askar_crypto::Error::from_msg(
            askar_crypto::ErrorKind::Encryption,
            "ChaCha20-Poly1305 (AWS-LC) seal failed",
        ))
    };
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, cek).map_err(fail)?);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(fail)?;
    key.seal_in_place_append_tag(nonce, Aad::from(aad.as_bytes()), buffer)
        .map_err(fail)
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
        let target_x = recipient
            .to_x25519()
            .map_err(|source| EnvelopeError::BadRecipientKid {
                kid: recipient.to_base58(),
                source,
            })?;
        let entry = match sender {
            None => {
                let sealed =
                    crypto_box_seal(&target_x, &cek_bytes[..]).map_err(EnvelopeError::Encrypt)?;
                RecipientOut {
                    encrypted_key: b64::encode(sealed.as_ref()),
                    header: RecipientHeaderOut {
                        kid: recipient.to_base58(),
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
                RecipientOut {
                    encrypted_key: b64::encode(&boxed),
                    header: RecipientHeaderOut {
                        kid: recipient.to_base58(),
                        sender: Some(b64::encode(sealed_sender.as_ref())),
                        iv: Some(b64::encode(&nonce)),
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
    finish_pack(message, entries, alg, enc, &cek_bytes[..])
}

/// The protected header of `entries` and the content encrypted with `cek`: the envelope JSON.
pub(crate) fn finish_pack(
    message: &[u8],
    entries: Vec<RecipientOut>,
    alg: Alg,
    enc: ContentEnc,
    cek: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let header = ProtectedOut {
        enc: ENC_LABEL,
        typ: TYP,
        alg: alg.as_str(),
        recipients: entries,
    };
    let header_json = serde_json::to_vec(&header).map_err(EnvelopeError::HeaderEncode)?;
    let protected = b64::encode(&header_json);

    let mut nonce = [0u8; 24];
    let nonce = &mut nonce[..enc.nonce_length()];
    fill_random(nonce);
    let mut buffer = Vec::with_capacity(message.len() + TAG_LENGTH);
    buffer.extend_from_slice(message);
    let ct_len = match enc {
        ContentEnc::C20P => {
            seal_c20p(cek, &mut buffer, nonce, &protected)?;
            message.len()
        }
        ContentEnc::XC20P => encrypt::<XC20P>(cek, &mut buffer, nonce, &protected)?,
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
