//! A minimal client for trying berth-imaged by hand and for `tests/bench/imaged-pull.sh`,
//! until the `berth` CLI exists: `pull REF [SOCKET]` prints one line per layer state and the
//! image id. SOCKET defaults to `$BERTH_RUN/imaged.sock`.

use std::path::PathBuf;

use berth_proto::imaged::PullRequest;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let reference = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: pull REF [SOCKET]"))?;
    let socket = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("BERTH_RUN").unwrap_or_else(|_| "/run/berth".into()))
            .join("imaged.sock")
    });
    let mut client = berth_imaged::client::connect(&socket).await?;
    let mut stream = client
        .pull(PullRequest {
            reference,
            platform: String::new(),
        })
        .await?
        .into_inner();
    while let Some(m) = stream.message().await? {
        if m.done {
            println!("{}", m.message);
            println!("{}", m.image_id);
        } else if !m.status.is_empty() && m.status != "downloading" {
            println!("{}: {} {}/{}", m.id, m.status, m.current, m.total);
        } else if !m.message.is_empty() {
            println!("{}", m.message);
        }
    }
    Ok(())
}
