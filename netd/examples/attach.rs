//! Measures the time to attach a container to a network through a running berth-netd:
//! CreateSandbox (netns, lo up, published port) + ConnectNetwork (veth, address, route, DNS
//! entry, nft rules), then RemoveSandbox. Usage: attach SOCKET NETWORK COUNT
//! (tests/bench/netd-attach.sh runs it against a private netd).

use std::time::Instant;

use berth_proto::netd as pb;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, network, count] = &args[..] else {
        anyhow::bail!("usage: attach SOCKET NETWORK COUNT");
    };
    let count: usize = count.parse()?;
    let ports = std::env::var_os("BERTH_BENCH_NO_PORTS").is_none();
    let mut c = berth_netd::client::connect(socket.as_ref()).await?;
    let (mut attach, mut detach) = (Vec::new(), Vec::new());
    for i in 0..count {
        let id = format!("{:064x}", 0xbe000 + i);
        let t = Instant::now();
        c.create_sandbox(pb::CreateSandboxRequest {
            container_id: id.clone(),
            name: format!("bench{i}"),
            hostname: format!("bench{i}"),
            ports: if ports {
                vec![pb::PortMapping {
                    container_port: 80,
                    ..Default::default()
                }]
            } else {
                vec![]
            },
            extra_hosts: vec![],
            ..Default::default()
        })
        .await?;
        c.connect_network(pb::ConnectRequest {
            container_id: id.clone(),
            network: network.clone(),
            ..Default::default()
        })
        .await?;
        attach.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        c.remove_sandbox(pb::RemoveSandboxRequest { container_id: id })
            .await?;
        detach.push(t.elapsed().as_secs_f64() * 1e3);
    }
    for (what, v) in [("attach", &mut attach), ("detach", &mut detach)] {
        v.sort_by(f64::total_cmp);
        println!(
            "{what}: n={} median={:.2} ms p90={:.2} ms min={:.2} ms max={:.2} ms",
            v.len(),
            v[v.len() / 2],
            v[v.len() * 9 / 10],
            v[0],
            v[v.len() - 1]
        );
    }
    Ok(())
}
