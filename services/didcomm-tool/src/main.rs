//! `didcomm-tool`: keys, pack and unpack from the command line, over the `didcomm-envelope` crate.
//!
//! For operators and developers poking at envelopes (and for seeding the fuzzer) until the mediator
//! binary exists. Reads messages and envelopes on stdin, writes results on stdout.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use didcomm_envelope::{pack, unpack, ContentEnc, KeyPair, VerKey};
use serde_json::json;

#[derive(Parser)]
#[command(version, about = "DIDComm v1 (RFC 0019) keys and envelopes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a key pair (random, or from a 32-byte hex seed) and print seed, verkey and did:key.
    Keygen {
        #[arg(long)]
        seed: Option<String>,
    },
    /// Convert a verkey between base58 and did:key.
    Key { key: String },
    /// Pack stdin for the given recipients (base58 or did:key); authcrypt with --from-seed.
    Pack {
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        #[arg(long)]
        from_seed: Option<String>,
        /// Use XChaCha20-Poly1305 (24-byte nonce) instead of the interoperable ChaCha20-Poly1305.
        #[arg(long)]
        xc20p: bool,
    },
    /// Unpack the envelope on stdin with any of the given 32-byte hex seeds.
    Unpack {
        #[arg(long = "seed", required = true)]
        seeds: Vec<String>,
    },
    /// Pack a sample message for three generated keys, unpack it as each, and show every step.
    Demo,
    /// Write seed envelopes for the `unpack` fuzz target into DIR.
    FuzzCorpus { dir: std::path::PathBuf },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Keygen { seed } => {
            let key = match seed {
                Some(hex) => KeyPair::from_seed(&parse_seed(&hex)?)?,
                None => KeyPair::generate()?,
            };
            print_json(&json!({
                "seed": to_hex(&key.secret_bytes()[..]),
                "verkey": key.verkey_base58(),
                "did_key": key.verkey().to_did_key(),
            }))
        }
        Command::Key { key } => {
            let vk = VerKey::parse(&key).context("not a verkey or did:key")?;
            print_json(&json!({"verkey": vk.to_base58(), "did_key": vk.to_did_key()}))
        }
        Command::Pack {
            to,
            from_seed,
            xc20p,
        } => {
            let recipients = to
                .iter()
                .map(|k| VerKey::parse(k).with_context(|| format!("recipient {k}")))
                .collect::<Result<Vec<_>>>()?;
            let sender = from_seed
                .map(|s| parse_seed(&s).and_then(|s| Ok(KeyPair::from_seed(&s)?)))
                .transpose()?;
            let enc = if xc20p {
                ContentEnc::XC20P
            } else {
                ContentEnc::C20P
            };
            let envelope = pack(&read_stdin()?, &recipients, sender.as_ref(), enc)?;
            write_stdout(&envelope)
        }
        Command::Unpack { seeds } => {
            let keys = seeds
                .iter()
                .map(|s| parse_seed(s).and_then(|s| Ok(KeyPair::from_seed(&s)?)))
                .collect::<Result<Vec<_>>>()?;
            let out = unpack(&read_stdin()?, |kid| {
                keys.iter().find(|k| k.verkey_base58() == kid)
            })?;
            print_json(&json!({
                "message": String::from_utf8_lossy(&out.message),
                "recipient": out.recipient.to_base58(),
                "sender": out.sender.map(|s| s.to_base58()),
            }))
        }
        Command::Demo => demo(),
        Command::FuzzCorpus { dir } => fuzz_corpus(&dir),
    }
}

fn demo() -> Result<()> {
    let alice = KeyPair::generate()?;
    let bobs = [
        KeyPair::generate()?,
        KeyPair::generate()?,
        KeyPair::generate()?,
    ];
    let message = br#"{"@type":"https://didcomm.org/basicmessage/1.0/message","@id":"demo-1","content":"hello"}"#;
    println!(
        "sender   {} ({})",
        alice.verkey_base58(),
        alice.verkey().to_did_key()
    );
    for bob in &bobs {
        println!("recipient {}", bob.verkey_base58());
    }
    let to: Vec<VerKey> = bobs.iter().map(|b| *b.verkey()).collect();
    let envelope = pack(message, &to, Some(&alice), ContentEnc::C20P)?;
    println!(
        "authcrypt envelope ({} bytes):\n{}",
        envelope.len(),
        String::from_utf8_lossy(&envelope)
    );
    for bob in &bobs {
        let out = unpack(&envelope, |kid| (kid == bob.verkey_base58()).then_some(bob))?;
        let sender = out.sender.map(|s| s.to_base58()).unwrap_or_default();
        if out.message != message || sender != alice.verkey_base58() {
            bail!("round trip failed for {}", bob.verkey_base58());
        }
        println!(
            "opened by {} from {}: {}",
            out.recipient,
            sender,
            String::from_utf8_lossy(&out.message)
        );
    }
    Ok(())
}

/// The key the `unpack` fuzz target holds (keep in step with fuzz_targets/unpack.rs).
const FUZZ_SEED: [u8; 32] = [7u8; 32];

fn fuzz_corpus(dir: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let ours = KeyPair::from_seed(&FUZZ_SEED)?;
    let other = KeyPair::generate()?;
    let sender = KeyPair::generate()?;
    let message =
        br#"{"@type":"https://didcomm.org/routing/1.0/forward","@id":"f","to":"x","msg":{}}"#;
    let mut n = 0;
    for enc in [ContentEnc::C20P, ContentEnc::XC20P] {
        for from in [None, Some(&sender)] {
            for to in [vec![*ours.verkey()], vec![*other.verkey(), *ours.verkey()]] {
                let envelope = pack(message, &to, from, enc)?;
                std::fs::write(dir.join(format!("seed-{n}.json")), envelope)?;
                n += 1;
            }
        }
    }
    println!("wrote {n} envelopes to {}", dir.display());
    Ok(())
}

fn parse_seed(hex: &str) -> Result<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 || !hex.is_ascii() {
        bail!("a seed is 32 bytes written as 64 hex digits");
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).context("seed is not hex")?;
    }
    Ok(seed)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_stdin() -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::io::stdin().read_to_end(&mut buf)?;
    Ok(buf)
}

fn write_stdout(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.write_all(b"\n")?;
    Ok(())
}

fn print_json(value: &serde_json::Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
