//! Publishes a port of a sandbox through a running berth-netd, for
//! `tests/bench/netd-port.sh`: `publish SOCKET ID up HOST_PORT CONTAINER_PORT` creates the
//! sandbox on the default network and prints its netns path; `publish SOCKET ID down`
//! removes it.

use berth_proto::netd as pb;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut c =
        berth_netd::client::connect(args.get(1).map(String::as_str).unwrap_or("").as_ref()).await?;
    let id = format!("{:0>64}", args.get(2).cloned().unwrap_or_default());
    match args.get(3).map(String::as_str) {
        Some("up") => {
            let port = |i: usize| -> anyhow::Result<u32> {
                Ok(args
                    .get(i)
                    .ok_or_else(|| anyhow::anyhow!("missing port"))?
                    .parse()?)
            };
            c.create_sandbox(pb::CreateSandboxRequest {
                container_id: id.clone(),
                name: "bench".into(),
                hostname: "bench".into(),
                ports: vec![pb::PortMapping {
                    host_port: port(4)?,
                    container_port: port(5)?,
                    ..Default::default()
                }],
                extra_hosts: vec![],
                ..Default::default()
            })
            .await?;
            let sb = c
                .connect_network(pb::ConnectRequest {
                    container_id: id,
                    network: "bridge".into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            println!("{}", sb.netns_path);
        }
        Some("down") => {
            c.remove_sandbox(pb::RemoveSandboxRequest { container_id: id })
                .await?;
        }
        _ => anyhow::bail!("usage: publish SOCKET ID up HOST_PORT CONTAINER_PORT | down"),
    }
    Ok(())
}
