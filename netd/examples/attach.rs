//! Measures the time to attach a container to a network through a running berth-netd:
//! CreateSandbox (netns, lo up, published port) + ConnectNetwork (veth, address, route, DNS
//! entry, nft rules) for COUNT sandboxes, then RemoveSandbox of each. Usage: attach SOCKET NETWORK COUNT
//! (tests/bench/netd-attach.sh runs it against a private netd).

use std::time::Instant;

use berth_proto::netd as pb;

/// Between operations, as between containers started one after the other: long enough for
/// the kernel to finish the previous one's deferred work (RCU grace periods).
const PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

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
    // Attaches first, then detaches, so that neither is timed while the kernel still finishes
    // the other (a removed veth is unregistered after RemoveSandbox has answered).
    let ids: Vec<String> = (0..count)
        .map(|i| format!("{:064x}", 0xbe000 + i))
        .collect();
    for (i, id) in ids.iter().enumerate() {
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
        tokio::time::sleep(PAUSE).await;
    }
    for id in ids {
        let t = Instant::now();
        c.remove_sandbox(pb::RemoveSandboxRequest { container_id: id })
            .await?;
        detach.push(t.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(PAUSE).await;
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
