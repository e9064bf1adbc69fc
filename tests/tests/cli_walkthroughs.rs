//! Docker's getting-started walkthroughs with `berth` in place of `docker`, on the local
//! fixtures. Every `berth` runs inside a network namespace the test makes (its "host"), so
//! the berth-netd it starts keeps its bridge, nft table and DNS there and nothing of the
//! real host is touched; clean-up deletes that namespace and kills what the test started.

mod engine_support;
use std::time::{Duration, Instant};

use berth_tests::{require_cmds, require_root};
use engine_support::Host;

fn can_run() -> bool {
    require_root() && require_cmds(&["ip", "nsenter", "nft", "wget"])
}

#[test]
fn a_published_web_server_answers_from_the_host_and_its_logs_follow() {
    if !can_run() {
        return;
    }
    let h = Host::new("walk-web");
    let id = h.ok(&["run", "-d", "-p", "8080:80", "--name", "web", "busybox", "sh", "-c", "mkdir /www && echo 'hello from berth' > /www/index.html && exec httpd -f -vv -p 80 -h /www"]);
    assert_eq!(id.trim().len(), 64);
    let ps = h.ok(&["ps", "--format", "{{.Names}} {{.Ports}}"]);
    assert_eq!(ps.trim(), "web 0.0.0.0:8080->80/tcp");
    assert_eq!(h.ok(&["port", "web"]).trim(), "80/tcp -> 0.0.0.0:8080");
    let mut page = String::new();
    h.until("the page on 127.0.0.1:8080", || {
        page = h.sh(&["wget", "-qO-", "http://127.0.0.1:8080/"]).stdout;
        !page.is_empty()
    });
    assert_eq!(page, "hello from berth\n");
    // The server's access log is in `logs`.
    // busybox httpd logs on stderr, and `logs` keeps the streams apart.
    h.until("the request in the log", || {
        h.berth(&["logs", "web"]).stderr.contains("url:/")
    });
    // From another machine, through the host's own address: the server logs that machine's
    // address, not a gateway's (no proxy, no masquerade in between).
    let (there, host_addr) = h.other_host();
    let page = there(&["wget", "-qO-", &format!("http://{host_addr}:8080/")]);
    assert_eq!(page.stdout, "hello from berth\n", "{}", page.stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = h.berth(&["logs", "web"]).stderr;
        if log.contains("[::ffff:10.233.9.2]:") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no request from 10.233.9.2 in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A port already published is refused, naming it.
    let out = h.berth(&["run", "-d", "-p", "8080:80", "busybox", "true"]);
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    assert!(out.stderr.contains("8080"), "{}", out.stderr);
    assert_eq!(
        h.ok(&["ps", "-aq"]).lines().count(),
        1,
        "the refused container stays"
    );
    // -P publishes every exposed port on a random host port.
    h.ok(&[
        "run", "-d", "-P", "--expose", "81", "--expose", "82/udp", "--name", "pub", "busybox",
        "sleep", "600",
    ]);
    let ports = h.ok(&["port", "pub"]);
    let lines: Vec<&str> = ports.lines().collect();
    assert_eq!(lines.len(), 2, "{ports}");
    assert!(
        lines[0].starts_with("81/tcp -> 0.0.0.0:") && lines[1].starts_with("82/udp -> 0.0.0.0:"),
        "{ports}"
    );
    h.ok(&["rm", "-f", "web", "pub"]);
    // Its rules went with it.
    let rules = h.sh(&["nft", "list", "table", "inet", "berth"]).stdout;
    assert!(!rules.contains("8080"), "{rules}");
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_and_alias() {
    if !can_run() {
        return;
    }
    let h = Host::new("walk-dns");
    h.ok(&["network", "create", "app"]);
    h.ok(&[
        "run",
        "-d",
        "--network",
        "app",
        "--name",
        "db",
        "busybox",
        "sleep",
        "600",
    ]);
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "db",
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    // Two containers share an alias: nslookup from a third gets both, round robin.
    for n in ["s1", "s2"] {
        h.ok(&[
            "run",
            "-d",
            "--network",
            "app",
            "--network-alias",
            "search",
            "--name",
            n,
            "busybox",
            "sleep",
            "600",
        ]);
    }
    let ips: Vec<String> = ["s1", "s2"]
        .iter()
        .map(|n| {
            h.ok(&[
                "inspect",
                "-f",
                "{{.NetworkSettings.Networks.app.IPAddress}}",
                n,
            ])
            .trim()
            .to_string()
        })
        .collect();
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let out = h.ok(&[
            "run",
            "--rm",
            "--network",
            "app",
            "busybox",
            "nslookup",
            "search",
        ]);
        for ip in &ips {
            assert!(out.contains(ip.as_str()), "{ip} missing:\n{out}");
        }
        // The first answer after the server's own lines.
        let answers: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.starts_with("Name:"))
            .filter_map(|l| {
                l.strip_prefix("Address: ")
                    .or_else(|| l.strip_prefix("Address 1: "))
            })
            .collect();
        if let Some(a) = answers.first() {
            firsts.insert(a.split_whitespace().next().unwrap_or_default().to_string());
        }
    }
    assert_eq!(firsts.len(), 2, "not round robin: {firsts:?}");
    // connect and disconnect work on a running container.
    h.ok(&["network", "create", "other"]);
    h.ok(&["network", "connect", "--alias", "dbx", "other", "db"]);
    let addrs = h.ok(&["exec", "db", "ip", "-o", "-4", "addr"]);
    assert!(addrs.contains("eth1"), "{addrs}");
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "other",
        "busybox",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "dbx",
    ]);
    assert!(out.contains("1 packets received"), "{out}");
    h.ok(&["network", "disconnect", "other", "db"]);
    assert!(!h
        .ok(&["exec", "db", "ip", "-o", "-4", "addr"])
        .contains("eth1"));
    // A network in use is not removed.
    let out = h.berth(&["network", "rm", "app"]);
    assert_eq!(out.code(), Some(1), "{}", out.stderr);
    h.ok(&["rm", "-f", "db", "s1", "s2"]);
    h.ok(&["network", "rm", "app", "other"]);
}

#[test]
fn a_named_volume_keeps_its_data_across_containers() {
    if !can_run() {
        return;
    }
    let h = Host::new("walk-vol");
    h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "todo-db:/etc/todos",
        "busybox",
        "sh",
        "-c",
        "echo buy milk > /etc/todos/list",
    ]);
    let vols = h.ok(&["volume", "ls", "-q"]);
    assert_eq!(vols.trim(), "todo-db");
    h.ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "user",
        "-v",
        "todo-db:/data:ro",
        "busybox",
        "sleep",
        "600",
    ]);
    assert_eq!(h.ok(&["exec", "user", "cat", "/data/list"]), "buy milk\n");
    let out = h.berth(&["exec", "user", "touch", "/data/x"]);
    assert_ne!(out.code(), Some(0), "a read-only volume took a write");
    // In use: not removed.
    let out = h.berth(&["volume", "rm", "todo-db"]);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("volume is in use"), "{}", out.stderr);
    h.ok(&["rm", "-f", "user"]);
    // A new volume on a path the image has is filled from the image, as Docker does.
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "etcvol:/etc",
        "busybox",
        "cat",
        "/etc/passwd",
    ]);
    assert!(out.contains("root:"), "{out}");
    // A bind mount.
    let dir = h.env.path().join("bind");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("in"), "from host\n").unwrap();
    let spec = format!("{}:/mnt", dir.display());
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &spec,
        "busybox",
        "sh",
        "-c",
        "cat /mnt/in; echo back > /mnt/out",
    ]);
    assert_eq!(out, "from host\n");
    assert_eq!(std::fs::read_to_string(dir.join("out")).unwrap(), "back\n");
    h.ok(&["volume", "rm", "todo-db", "etcvol"]);
}

#[test]
fn links_volumes_from_and_init_apply() {
    // --init binds the host's static tini (Debian's tini package).
    if !can_run() || !require_cmds(&["tini-static"]) {
        return;
    }
    let h = Host::new("walk-link");
    h.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "-v",
        "/data",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/f; sleep 600",
    ]);
    let hosts = h.ok(&[
        "run",
        "--rm",
        "--link",
        "srv:db",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts; ping -c1 -W5 db",
    ]);
    let ip = h.ok(&["inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv"]);
    assert!(hosts.contains(&format!("{}\tdb", ip.trim())), "{hosts}");
    assert!(hosts.contains("1 packets received"), "{hosts}");
    let out = h.berth(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--link",
        "srv:db",
        "busybox",
        "true",
    ]);
    assert_eq!(out.code(), Some(125), "{}", out.stderr);
    h.until("srv's volume content", || {
        h.berth(&["exec", "srv", "cat", "/data/f"]).stdout == "x\n"
    });
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volumes-from",
        "srv:ro",
        "busybox",
        "sh",
        "-c",
        "cat /data/f; touch /data/g 2>/dev/null || echo read-only",
    ]);
    assert_eq!(out, "x\nread-only\n");
    let ps = h.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--init",
        "busybox",
        "ps",
        "-o",
        "pid,args",
    ]);
    assert!(
        ps.lines()
            .nth(1)
            .unwrap()
            .contains("/sbin/docker-init -- ps"),
        "{ps}"
    );
    h.ok(&["rm", "-fv", "srv"]);
    assert_eq!(
        h.ok(&["volume", "ls", "-q"]),
        "",
        "rm -v left srv's anonymous volume"
    );
}

/// Docker's getting-started nginx, as written: `run -d -p 8080:80 nginx`, curl it, `exec -it`
/// into it, `cp` a page in and out. On the Debian + nginx-light fixture (BERTH_E2E_FULL=1).
#[test]
fn nginx_published_on_8080_answers_curl() {
    let Some(debian) = berth_tests::debian_fixtures() else {
        eprintln!("skipped: set BERTH_E2E_FULL=1 for the Debian image tier");
        return;
    };
    if !can_run() || !require_cmds(&["curl"]) {
        return;
    }
    let h = Host::new("walk-nginx");
    h.ok(&[
        "load",
        "-i",
        &debian.join("debian.tar").display().to_string(),
    ]);
    h.ok(&["tag", "berth/debian-nginx:latest", "nginx"]);
    h.ok(&["run", "-d", "-p", "8080:80", "--name", "web", "nginx"]);
    let mut page = String::new();
    h.until("nginx on 127.0.0.1:8080", || {
        page = h.sh(&["curl", "-fsS", "http://127.0.0.1:8080/"]).stdout;
        !page.is_empty()
    });
    assert!(page.contains("nginx") || page.contains("html"), "{page}");
    // A page copied in is served; copied back out it is the same.
    let file = h.env.path().join("hello.html");
    std::fs::write(&file, "<h1>hello from berth</h1>\n").unwrap();
    let root = h.ok(&[
        "exec",
        "web",
        "sh",
        "-c",
        "for d in /var/www/html /usr/share/nginx/html; do [ -d $d ] && echo $d && break; done",
    ]);
    let root = root.trim();
    h.ok(&[
        "cp",
        &file.display().to_string(),
        &format!("web:{root}/hello.html"),
    ]);
    let got = h
        .sh(&["curl", "-fsS", "http://127.0.0.1:8080/hello.html"])
        .stdout;
    assert_eq!(got, "<h1>hello from berth</h1>\n");
    let back = h.env.path().join("back.html");
    h.ok(&[
        "cp",
        &format!("web:{root}/hello.html"),
        &back.display().to_string(),
    ]);
    assert_eq!(
        std::fs::read_to_string(&back).unwrap(),
        "<h1>hello from berth</h1>\n"
    );
    // nginx's access log (its stdout here) names the client as it is: another machine
    // reaching the host's address is logged with that machine's address.
    let (there, host_addr) = h.other_host();
    if require_cmds(&["curl"]) {
        let out = there(&[
            "curl",
            "-fsS",
            &format!("http://{host_addr}:8080/hello.html"),
        ]);
        assert_eq!(out.stdout, "<h1>hello from berth</h1>\n", "{}", out.stderr);
    }
    h.until("the other machine's address in nginx's access log", || {
        h.berth(&["logs", "web"])
            .stdout
            .lines()
            .any(|l| l.starts_with("10.233.9.2 ") && l.contains("GET /hello.html"))
    });
    h.ok(&["rm", "-f", "web"]);
}

/// A DNS server for the test's "host" namespace `ns`, on `addr`:53 (UDP): `name` has the
/// A record `ip`; any other name is NXDOMAIN. Serves until `stop` is set.
fn fake_upstream(
    ns: &std::path::Path,
    addr: std::net::Ipv4Addr,
    name: &'static str,
    ip: std::net::Ipv4Addr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let ns_file = std::fs::File::open(ns).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        // This thread only: the socket is made in the test's namespace and stays there.
        nix::sched::setns(&ns_file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let sock = std::net::UdpSocket::bind((addr, 53)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 512];
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if let Some(reply) = dns_reply(&buf[..n], name, ip) {
                let _ = sock.send_to(&reply, peer);
            }
        }
    });
    rx.recv().unwrap();
    t
}

/// The answer to a one-question query: A `ip` for `name`, no records for its other types,
/// NXDOMAIN for other names.
fn dns_reply(q: &[u8], name: &str, ip: std::net::Ipv4Addr) -> Option<Vec<u8>> {
    let mut i = 12;
    let mut labels = Vec::new();
    while *q.get(i)? != 0 {
        let len = q[i] as usize;
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).to_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let question = &q[12..i + 5];
    let known = labels.join(".") == name;
    let answer = known && qtype == 1;
    let mut r = q[..2].to_vec();
    r.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
    r.extend_from_slice(&[0, 1, 0, answer as u8, 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if answer {
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Some(r)
}

/// `--dns` on a user-defined network: the network's DNS server stays in resolv.conf, so the
/// container resolves its peers by name, and forwards the rest to the `--dns` servers (here
/// one that knows a name nothing else knows), as Docker's embedded DNS does.
#[test]
fn dns_servers_of_a_container_on_a_user_network_answer_what_peers_do_not() {
    if !can_run() {
        return;
    }
    let h = Host::new("walk-owndns");
    // The fake upstream on an address of the test's host, reachable from containers.
    h.sh(&["ip", "addr", "add", "10.123.45.1/32", "dev", "lo"])
        .assert_success();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = fake_upstream(
        &h.ns,
        "10.123.45.1".parse().unwrap(),
        "only.upstream.test",
        "10.77.0.7".parse().unwrap(),
        stop.clone(),
    );
    h.ok(&["network", "create", "app"]);
    h.ok(&[
        "run",
        "-d",
        "--network",
        "app",
        "--name",
        "peer",
        "busybox",
        "sleep",
        "600",
    ]);
    let peer_ip = h
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.app.IPAddress}}",
            "peer",
        ])
        .trim()
        .to_string();
    let gateway = h
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.app.Gateway}}",
            "peer",
        ])
        .trim()
        .to_string();
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--dns",
        "10.123.45.1",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:1",
        "busybox",
        "cat",
        "/etc/resolv.conf",
    ]);
    assert_eq!(
        out,
        format!("nameserver {gateway}\nsearch example.test\noptions ndots:1\n")
    );
    // No search domains (`.`: not even the host's): busybox's nslookup does not fall back
    // to the bare name after `peer.DOMAIN`.
    let out = h.berth(&[
        "run",
        "--rm",
        "--network",
        "app",
        "--dns",
        "10.123.45.1",
        "--dns-search",
        ".",
        "busybox",
        "sh",
        "-c",
        "nslookup peer; nslookup only.upstream.test",
    ]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().unwrap();
    assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    let addrs: Vec<&str> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Name:"))
        .filter_map(|l| {
            l.strip_prefix("Address: ")
                .or_else(|| l.strip_prefix("Address 1: "))
        })
        .map(|a| a.split_whitespace().next().unwrap_or_default())
        .collect();
    assert!(addrs.contains(&peer_ip.as_str()), "{}", out.stdout);
    assert!(addrs.contains(&"10.77.0.7"), "{}", out.stdout);
    h.ok(&["rm", "-f", "peer"]);
}

/// Docker's IPv6 walkthrough: a dual-stack network, containers with an automatic and a
/// static (`--ip6`) IPv6 address reaching each other by name over IPv6 (AAAA records from
/// the network's DNS server), inspect and network inspect showing Docker's fields, and the
/// refusals of a static address that is taken, outside the subnet or on an IPv4-only network.
#[test]
fn a_dual_stack_network_resolves_and_shows_ipv6_like_docker() {
    if !can_run() {
        return;
    }
    if !berth_tests::features::ipv6() {
        berth_tests::host_lacks("IPv6");
        return;
    }
    let h = Host::new("walk-ipv6");
    h.ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.234.20.0/24",
        "--subnet",
        "fd00:234:20::/64",
        "ds",
    ]);
    h.ok(&["network", "create", "--subnet", "10.234.21.0/24", "v4"]);
    let run_d = |name: &str, net: &str, extra: &[&str]| {
        let mut args = vec!["run", "-d", "--network", net, "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["busybox", "sleep", "600"]);
        h.ok(&args).trim().to_string()
    };
    let web = run_d("web", "ds", &["--ip6", "fd00:234:20::80"]);
    run_d("peer", "ds", &[]);
    let solo = run_d("solo", "v4", &[]);

    // docker network inspect: EnableIPv6, both IPAM configs, each container's IPv6Address.
    let j: serde_json::Value = serde_json::from_str(&h.ok(&["network", "inspect", "ds"])).unwrap();
    let n = &j[0];
    assert_eq!(n["EnableIPv6"], true, "{n}");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.234.20.0/24", "{n}");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.234.20.1");
    assert_eq!(n["IPAM"]["Config"][1]["Subnet"], "fd00:234:20::/64");
    assert_eq!(n["IPAM"]["Config"][1]["Gateway"], "fd00:234:20::1");
    assert_eq!(n["Containers"][&web]["IPv6Address"], "fd00:234:20::80/64");
    let j: serde_json::Value = serde_json::from_str(&h.ok(&["network", "inspect", "v4"])).unwrap();
    assert_eq!(j[0]["EnableIPv6"], false);
    assert_eq!(j[0]["Containers"][&solo]["IPv6Address"], "");

    // docker inspect: the IPv6 fields of each network, "" and 0 on an IPv4-only one.
    let f = |c: &str, field: &str, net: &str| {
        h.ok(&[
            "inspect",
            "-f",
            &format!("{{{{.NetworkSettings.Networks.{net}.{field}}}}}"),
            c,
        ])
        .trim()
        .to_string()
    };
    assert_eq!(f("web", "GlobalIPv6Address", "ds"), "fd00:234:20::80");
    assert_eq!(f("web", "GlobalIPv6PrefixLen", "ds"), "64");
    assert_eq!(f("web", "IPv6Gateway", "ds"), "fd00:234:20::1");
    assert_eq!(f("peer", "GlobalIPv6Address", "ds"), "fd00:234:20::2");
    let j: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "web"])).unwrap();
    let ep = &j[0]["NetworkSettings"]["Networks"]["ds"];
    assert_eq!(ep["IPAMConfig"]["IPv6Address"], "fd00:234:20::80", "{ep}");
    let j: serde_json::Value = serde_json::from_str(&h.ok(&["inspect", "solo"])).unwrap();
    let ep = &j[0]["NetworkSettings"]["Networks"]["v4"];
    assert_eq!(ep["GlobalIPv6Address"], "", "{ep}");
    assert_eq!(ep["GlobalIPv6PrefixLen"], 0);
    assert_eq!(ep["IPv6Gateway"], "");
    assert_eq!(ep["IPAMConfig"], serde_json::Value::Null);

    // Names resolve to IPv6 addresses (AAAA) and answer over IPv6, from another container.
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "ds",
        "busybox",
        "nslookup",
        "-type=aaaa",
        "web",
    ]);
    assert!(out.contains("fd00:234:20::80"), "{out}");
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "ds",
        "busybox",
        "ping",
        "-6",
        "-c",
        "1",
        "-W",
        "5",
        "web",
    ]);
    assert!(
        out.contains("fd00:234:20::80") && out.contains("1 packets received"),
        "{out}"
    );
    // An IPv4-only name: no AAAA, and no NXDOMAIN either (the A record still resolves).
    let out = h.ok(&[
        "run",
        "--rm",
        "--network",
        "v4",
        "busybox",
        "nslookup",
        "-type=aaaa",
        "solo",
    ]);
    assert!(
        !out.contains("NXDOMAIN") && !out.contains("can't find"),
        "{out}"
    );

    // --ip6 refused: taken, outside the subnet, on a network without IPv6.
    for (net, ip6, says) in [
        ("ds", "fd00:234:20::80", "already in use"),
        ("ds", "fd00:99::5", "outside subnet fd00:234:20::/64"),
        ("v4", "fd00:234:21::5", "has no IPv6"),
    ] {
        let out = h.berth(&[
            "run",
            "--rm",
            "--network",
            net,
            "--ip6",
            ip6,
            "busybox",
            "true",
        ]);
        assert_ne!(out.code(), Some(0), "{ip6} on {net}");
        assert!(out.stderr.contains(says), "{ip6} on {net}: {}", out.stderr);
    }

    // network connect --ip6: a second, static IPv6 address on a running container.
    h.ok(&[
        "network",
        "connect",
        "--ip6",
        "fd00:234:20::99",
        "ds",
        "solo",
    ]);
    assert_eq!(f("solo", "GlobalIPv6Address", "ds"), "fd00:234:20::99");
    let addrs = h.ok(&["exec", "solo", "ip", "-o", "-6", "addr"]);
    assert!(addrs.contains("fd00:234:20::99/64"), "{addrs}");

    h.ok(&["rm", "-f", "web", "peer", "solo"]);
    h.ok(&["network", "rm", "ds", "v4"]);
}
