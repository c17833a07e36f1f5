//! The `codec` suite: swarm-codec's envelope encode and decode at typical value sizes, in
//! four modes (plain, compressed, encrypted, both), on JSON-like agent memory and on
//! incompressible random bytes; and our sealing beside the raw AEAD crates in the same run.

use std::sync::Arc;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use swarm_codec::{Cipher, Codec, CodecConfig, Key, KeyId, Keyring, Seal};

use crate::harness::{
    Comparison, Measurement, Section, Settings, faster, measure, measure_batched,
};

/// Value sizes measured: a small note, the compression threshold, a document, a large blob.
const SIZES: [usize; 4] = [256, 1024, 10 * 1024, 64 * 1024];

/// The associated data the store would pass: the record's coordinates.
const AAD: &[u8] =
    b"swarm=bench;ns=agents/memory;key=task-4711/observations;level=2;owner=agent-07;team=build";

/// Alternating rounds of each comparison; the best of each side is reported.
const ROUNDS: usize = 3;

/// The goal for our 1 KiB encrypt+decrypt against calling the AEAD crate directly.
const SEAL_GOAL: f64 = 1.5;

#[derive(Clone, Copy)]
enum Mode {
    Plain,
    Compressed,
    Encrypted,
    Both,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Plain, Mode::Compressed, Mode::Encrypted, Mode::Both];

    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Compressed => "compressed",
            Mode::Encrypted => "encrypted",
            Mode::Both => "compressed+encrypted",
        }
    }

    /// Compression is tried at every size here (threshold 0), so the 256 B rows show its cost
    /// even though the default threshold (1 KiB) would skip it.
    fn codec(self, keyring: &Arc<Keyring>, cipher: Cipher) -> Codec {
        let base = CodecConfig::default().with_cipher(cipher);
        let config = match self {
            Mode::Plain | Mode::Encrypted => base.with_compression_threshold(usize::MAX),
            Mode::Compressed | Mode::Both => base.with_compression_threshold(0),
        };
        Codec::new(config, Some(keyring.clone()))
    }

    fn seal(self) -> Seal<'static> {
        match self {
            Mode::Plain | Mode::Compressed => Seal::Plain,
            Mode::Encrypted | Mode::Both => Seal::Encrypt { aad: AAD },
        }
    }
}

pub(crate) fn run(settings: &Settings) -> anyhow::Result<Section> {
    let mut section = Section::new("codec");
    let keyring = Arc::new(Keyring::new(KeyId::new(1), Key::generate()?));

    for size in SIZES {
        // Fewer calls for larger values, so each row takes comparable time.
        let sized = scaled(settings, size);
        for (input_name, input) in [("json", memory_json(size)), ("random", random_bytes(size))] {
            for mode in Mode::ALL {
                let codec = mode.codec(&keyring, Cipher::Aes256Gcm);
                let seal = mode.seal();
                let envelope = codec.encode(&input, seal)?;
                anyhow::ensure!(codec.decode(&envelope, AAD)? == input, "round trip failed");
                let label = format!("{} {input_name} {}", mode.name(), human(size));
                section.measurements.push(measure(&format!("encode {label}"), &sized, || {
                    codec.encode(&input, seal).map(|e| e.len()).unwrap_or(0)
                }));
                section.measurements.push(measure(&format!("decode {label}"), &sized, || {
                    codec.decode(&envelope, AAD).map(|v| v.len()).unwrap_or(0)
                }));
                if input_name == "json" && matches!(mode, Mode::Compressed | Mode::Both) {
                    section.figures.push((
                        format!(
                            "compression ratio json {} {} (value / envelope)",
                            human(size),
                            mode.name()
                        ),
                        size as f64 / envelope.len() as f64,
                    ));
                }
            }
        }
    }

    // Our encrypt+decrypt beside the AEAD crate called directly with a pre-initialized cipher,
    // a random nonce and the same associated data: what the envelope costs on top.
    let value = memory_json(1024);
    let batch = 16;
    for cipher in Cipher::ALL {
        let codec = Mode::Encrypted.codec(&keyring, cipher);
        let name = format!("codec {cipher} 1 KiB encrypt+decrypt");
        // Alternate ours and the baseline and keep the best round of each: the machine is
        // shared, and a burst of outside load should not land on one side only.
        let mut best: Option<(Measurement, Measurement)> = None;
        for _ in 0..ROUNDS {
            let ours = measure_batched(&name, settings, batch, || {
                let envelope = codec.encode(&value, Seal::Encrypt { aad: AAD }).unwrap_or_default();
                codec.decode(&envelope, AAD).map(|v| v.len()).unwrap_or(0)
            });
            let baseline = match cipher {
                Cipher::Aes256Gcm => raw_round_trip::<aes_gcm::Aes256Gcm>(&value, settings, batch)?,
                Cipher::ChaCha20Poly1305 => {
                    raw_round_trip::<chacha20poly1305::ChaCha20Poly1305>(&value, settings, batch)?
                }
                Cipher::XChaCha20Poly1305 => {
                    raw_round_trip::<chacha20poly1305::XChaCha20Poly1305>(&value, settings, batch)?
                }
                other => anyhow::bail!("no baseline for {other}"),
            };
            best = Some(match best {
                None => (ours, baseline),
                Some((o, b)) => (faster(o, ours), faster(b, baseline)),
            });
        }
        let Some((ours, baseline)) = best else { anyhow::bail!("no rounds measured") };
        let goal =
            matches!(cipher, Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305).then_some(SEAL_GOAL);
        section.comparisons.push(Comparison::latency(
            &format!("{cipher} 1 KiB encrypt+decrypt: codec vs {} crate", crate_name(cipher)),
            ours,
            baseline,
            goal,
        ));
    }
    Ok(section)
}

/// Encrypt then decrypt `value` with the AEAD crate directly, as a caller would without our
/// envelope: one pre-initialized cipher, a fresh random nonce per value, the same aad.
fn raw_round_trip<A>(value: &[u8], settings: &Settings, batch: u64) -> anyhow::Result<Measurement>
where
    A: KeyInit + Aead,
    aes_gcm::aead::Nonce<A>: Generate,
    aes_gcm::aead::Key<A>: Generate,
{
    let aead = A::new(&aes_gcm::aead::Key::<A>::generate());
    let check_nonce = aes_gcm::aead::Nonce::<A>::generate();
    let sealed = aead
        .encrypt(&check_nonce, Payload { msg: value, aad: AAD })
        .map_err(|_| anyhow::anyhow!("seal"))?;
    anyhow::ensure!(
        aead.decrypt(&check_nonce, Payload { msg: &sealed, aad: AAD }).ok().as_deref()
            == Some(value)
    );
    Ok(measure_batched("raw AEAD 1 KiB encrypt+decrypt", settings, batch, || {
        let nonce = aes_gcm::aead::Nonce::<A>::generate();
        let sealed = aead.encrypt(&nonce, Payload { msg: value, aad: AAD }).unwrap_or_default();
        aead.decrypt(&nonce, Payload { msg: &sealed, aad: AAD }).map(|v| v.len()).unwrap_or(0)
    }))
}

fn crate_name(cipher: Cipher) -> &'static str {
    match cipher {
        Cipher::Aes256Gcm => "aes-gcm",
        _ => "chacha20poly1305",
    }
}

fn scaled(settings: &Settings, size: usize) -> Settings {
    let factor = (size / 1024).clamp(1, 16) as u64;
    Settings {
        warmup: (settings.warmup / factor).max(10),
        iterations: (settings.iterations / factor).max(100),
        quick: settings.quick,
    }
}

fn human(size: usize) -> String {
    if size >= 1024 { format!("{} KiB", size / 1024) } else { format!("{size} B") }
}

/// The benchmarks' sample agent memory (`swarm_memory::memory_json`), as bytes.
fn memory_json(len: usize) -> Vec<u8> {
    swarm_memory::memory_json(len).into_bytes()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// xorshift64*: deterministic input data, not for anything secret.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
