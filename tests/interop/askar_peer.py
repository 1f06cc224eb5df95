"""An RFC 0019 peer built on Python aries-askar, for cross-implementation tests.

It is deliberately independent of our Rust crate: the same wire format, written with the
primitives that ACA-Py uses (aries_askar's crypto_box, crypto_box_seal and ChaCha20 AEAD keys).

Protocol: one JSON request per line on stdin, one JSON answer per line on stdout.
  {"op": "pack", "message": str, "to": [base58 verkey], "from_seed": hex|null, "enc": "C20P"|"XC20P"}
      -> {"envelope": str}
  {"op": "unpack", "envelope": str, "seeds": [hex]}
      -> {"message": str, "recipient": base58, "sender": base58|null} or {"error": str}
  {"op": "verkey", "seed": hex} -> {"verkey": base58}
"""

import base64
import json
import sys

import base58
from aries_askar import Key, KeyAlg, crypto_box


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64(text: str) -> bytes:
    text = text.replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def ed_key(seed_hex: str) -> Key:
    return Key.from_secret_bytes(KeyAlg.ED25519, bytes.fromhex(seed_hex))


def verkey_of(key: Key) -> str:
    return base58.b58encode(key.get_public_bytes()).decode("ascii")


def x_public(verkey: str) -> Key:
    return Key.from_public_bytes(KeyAlg.ED25519, base58.b58decode(verkey)).convert_key(
        KeyAlg.X25519
    )


def pack(message: str, to: list, from_seed, enc: str) -> str:
    cek = Key.generate(KeyAlg.XC20P if enc == "XC20P" else KeyAlg.C20P)
    cek_bytes = cek.get_secret_bytes()
    sender = ed_key(from_seed) if from_seed else None
    recipients = []
    for verkey in to:
        target = x_public(verkey)
        if sender is None:
            recipients.append(
                {
                    "encrypted_key": b64url(crypto_box.crypto_box_seal(target, cek_bytes)),
                    "header": {"kid": verkey},
                }
            )
        else:
            sender_x = sender.convert_key(KeyAlg.X25519)
            nonce = crypto_box.random_nonce()
            boxed = crypto_box.crypto_box(target, sender_x, cek_bytes, nonce)
            sealed_sender = crypto_box.crypto_box_seal(target, verkey_of(sender).encode())
            recipients.append(
                {
                    "encrypted_key": b64url(boxed),
                    "header": {"kid": verkey, "sender": b64url(sealed_sender), "iv": b64url(nonce)},
                }
            )
    header = {
        "enc": "xchacha20poly1305_ietf",
        "typ": "JWM/1.0",
        "alg": "Authcrypt" if sender else "Anoncrypt",
        "recipients": recipients,
    }
    protected = b64url(json.dumps(header).encode())
    ciphertext, tag, nonce = cek.aead_encrypt(message.encode(), aad=protected.encode()).parts
    return json.dumps(
        {
            "protected": protected,
            "iv": b64url(nonce),
            "ciphertext": b64url(ciphertext),
            "tag": b64url(tag),
        }
    )


def unpack(envelope: str, seeds: list) -> dict:
    outer = json.loads(envelope)
    header = json.loads(unb64(outer["protected"]))
    if header["alg"] not in ("Anoncrypt", "Authcrypt"):
        raise ValueError("unsupported alg " + header["alg"])
    ours = {verkey_of(k): k for k in (ed_key(s) for s in seeds)}
    for recipient in header["recipients"]:
        kid = recipient["header"]["kid"]
        if kid not in ours:
            continue
        my_x = ours[kid].convert_key(KeyAlg.X25519)
        sender_field = recipient["header"].get("sender")
        sender_verkey = None
        if header["alg"] == "Authcrypt":
            sender_verkey = crypto_box.crypto_box_seal_open(my_x, unb64(sender_field)).decode()
            cek_bytes = crypto_box.crypto_box_open(
                my_x,
                x_public(sender_verkey),
                unb64(recipient["encrypted_key"]),
                unb64(recipient["header"]["iv"]),
            )
        else:
            cek_bytes = crypto_box.crypto_box_seal_open(my_x, unb64(recipient["encrypted_key"]))
        iv = unb64(outer["iv"])
        alg = {12: KeyAlg.C20P, 24: KeyAlg.XC20P}[len(iv)]
        cek = Key.from_secret_bytes(alg, bytes(cek_bytes))
        message = cek.aead_decrypt(
            unb64(outer["ciphertext"]),
            nonce=iv,
            tag=unb64(outer["tag"]),
            aad=outer["protected"].encode(),
        )
        return {"message": bytes(message).decode(), "recipient": kid, "sender": sender_verkey}
    raise ValueError("no recipient key of ours")


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            op = request["op"]
            if op == "pack":
                answer = {
                    "envelope": pack(
                        request["message"], request["to"], request.get("from_seed"), request["enc"]
                    )
                }
            elif op == "unpack":
                answer = unpack(request["envelope"], request["seeds"])
            elif op == "verkey":
                answer = {"verkey": verkey_of(ed_key(request["seed"]))}
            else:
                answer = {"error": "unknown op " + op}
        except Exception as exc:  # report to the test, keep serving
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
