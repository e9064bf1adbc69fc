//! How long a layer of the size the pull benchmark uses (Debian minbase + nginx-light, about
//! 65 MB gzip in one layer) takes to decompress, hash and unpack. Ignored by default; run:
//!
//! ```sh
//! cargo test --release -p berth-imaged --test layer -- --ignored --nocapture perf
//! ```

use std::time::Instant;

use berth_imaged::layer::{unpack, Compression, UnpackOptions};

use crate::support::*;

/// xorshift64*, so the layer is the same on every run without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Content that compresses about as a Debian root does (binaries and text, ~1:2.8).
fn content(rng: &mut Rng, len: usize, words: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        let r = rng.next();
        if r % 100 < 3 {
            // machine code-like: random bytes
            out.extend_from_slice(&rng.next().to_le_bytes());
        } else {
            out.extend_from_slice(&words[(r >> 8) as usize % words.len()]);
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

/// A layer of about 190 MB in ~6000 files under ~300 directories.
pub fn debian_sized_layer() -> Vec<u8> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let words: Vec<Vec<u8>> = (0..512)
        .map(|_| {
            let n = 3 + (rng.next() % 8) as usize;
            (0..n).map(|_| b'a' + (rng.next() % 26) as u8).collect()
        })
        .collect();
    let mut entries = Vec::new();
    for d in 0..300 {
        entries.push(dir(format!("usr/share/d{d:03}")));
    }
    let mut total = 0usize;
    let mut i = 0;
    while total < 190 << 20 {
        // Mostly small files, some large ones, as in /usr.
        let r = rng.next();
        let len = if r % 50 == 7 {
            (1 << 20) + (r >> 20) as usize % (4 << 20)
        } else {
            (r >> 16) as usize % (40 << 10)
        };
        let d = (r >> 40) as usize % 300;
        entries.push(
            file(
                format!("usr/share/d{d:03}/f{i}"),
                content(&mut rng, len, &words),
            )
            .mode(0o644),
        );
        total += len;
        i += 1;
    }
    tar(&entries)
}

#[test]
#[ignore = "a benchmark: run with --release --ignored"]
fn perf_unpack_65mb_gzip_layer() {
    if !root() {
        return;
    }
    let plain = debian_sized_layer();
    let gz = compress(Compression::Gzip, &plain);
    // To compare with other tools on the same blob (gzip -dc | sha256sum, tar -xzf).
    if let Some(out) = std::env::var_os("BERTH_LAYER_PERF_BLOB") {
        std::fs::write(out, &gz).unwrap();
    }
    // The parts on their own, for comparison: inflate, then inflate and hash.
    let start = Instant::now();
    let mut d = Compression::Gzip.decoder(&gz[..]).unwrap();
    std::io::copy(&mut d, &mut std::io::sink()).unwrap();
    let inflate = start.elapsed();
    let start = Instant::now();
    let mut d = Compression::Gzip.decoder(&gz[..]).unwrap();
    let mut h = berth_imaged::digest::Hasher::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut d, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finish();
    let inflate_hash = start.elapsed();
    eprintln!(
        "inflate alone {:.3} s, inflate+sha256 {:.3} s",
        inflate.as_secs_f64(),
        inflate_hash.as_secs_f64()
    );

    let s = Scratch::new();
    let (start, cpu) = (Instant::now(), cpu_time());
    let report = unpack(&gz[..], &s.dest, &UnpackOptions::new(LAYER)).unwrap();
    let took = start.elapsed();
    eprintln!(
        "gzip: cpu user {:.3} s, sys {:.3} s",
        cpu_time().0 - cpu.0,
        cpu_time().1 - cpu.1
    );
    // The tar alone: what writing the files costs.
    // Kept until the end: ext4 skips inodes freed in the last minute when it allocates,
    // and scanning past them would slow the next run down.
    let s2 = Scratch::new();
    let (start, cpu) = (Instant::now(), cpu_time());
    unpack(&plain[..], &s2.dest, &UnpackOptions::new(LAYER)).unwrap();
    eprintln!(
        "plain tar: hash+unpack {:.3} s (cpu user {:.3} s, sys {:.3} s)",
        start.elapsed().as_secs_f64(),
        cpu_time().0 - cpu.0,
        cpu_time().1 - cpu.1
    );

    eprintln!(
        "unpack: {:.1} MB gzip, {:.1} MB tar, {} entries: decompress+hash+unpack {:.3} s ({:.0} MB/s of tar)",
        gz.len() as f64 / 1e6,
        plain.len() as f64 / 1e6,
        report.entries,
        took.as_secs_f64(),
        plain.len() as f64 / 1e6 / took.as_secs_f64(),
    );
    assert_eq!(report.tar_size, plain.len() as u64);
}

/// User and system CPU seconds of this process so far, all threads.
fn cpu_time() -> (f64, f64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}
