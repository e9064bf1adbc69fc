//! Unpacks one layer blob into a new directory and prints where the time went, for tuning
//! the unpacker apart from the network: `unpack BLOB DEST`.

use std::fs::File;
use std::io::BufReader;
use std::time::Instant;

use berth_imaged::layer::{unpack, UnpackOptions};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(blob), Some(dest)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: unpack BLOB DEST");
    };
    std::fs::create_dir(&dest)?;
    let started = Instant::now();
    let report = unpack(
        BufReader::new(File::open(&blob)?),
        dest.as_ref(),
        &UnpackOptions::new(blob.clone()),
    )?;
    println!(
        "{} entries, {} bytes of files, {} bytes of tar in {:?}",
        report.entries,
        report.written,
        report.tar_size,
        started.elapsed()
    );
    Ok(())
}
