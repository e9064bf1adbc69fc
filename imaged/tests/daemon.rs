//! berth-imaged end to end: a real daemon, a real registry (Debian's docker-registry with
//! the busybox fixture), and skopeo to check that what we push and pull has the registry's
//! digests.

mod daemon_support;

use berth_proto::imaged as pb;
use berth_tests::{require_cmds, require_root, Registry, TestEnv};
use daemon_support::*;

fn can_run() -> bool {
    require_root() && require_cmds(&["docker-registry", "skopeo", "du"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_every_fixture_manifest_kind_and_lists_them_as_docker_does() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-pull");
    let reg = Registry::start(&env);
    let mut d = Imaged::start(&env).await;
    for tag in ["latest", "docker", "multi"] {
        let r = reg.reference(&format!("berth/busybox:{tag}"));
        let msgs = pull(&mut d.client, &r)
            .await
            .unwrap_or_else(|e| panic!("pull {r}: {e}"));
        let last = msgs.last().unwrap();
        assert_eq!(last.digest, skopeo_digest(&r), "{r}");
        assert!(last.image_id.starts_with("sha256:"), "{last:?}");
    }
    let images = list(&mut d.client).await;
    let tags: Vec<String> = images.iter().flat_map(|i| i.repo_tags.clone()).collect();
    for tag in ["latest", "docker", "multi"] {
        let want = reg.reference(&format!("berth/busybox:{tag}"));
        assert!(tags.contains(&want), "{want} not in {tags:?}");
    }
    // One busybox layer, whatever manifest named it: unpacked once.
    let snapshots = std::fs::read_dir(env.root().join("snapshots"))
        .unwrap()
        .count();
    let ids: std::collections::HashSet<_> = images.iter().map(|i| i.id.clone()).collect();
    assert!(
        snapshots <= ids.len(),
        "{snapshots} snapshot dirs for {} images",
        ids.len()
    );

    let v = inspect(&mut d.client, &reg.reference("berth/busybox:latest"))
        .await
        .unwrap();
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["RootFS"]["Type"], "layers");
    assert!(v["Size"].as_u64().unwrap() > 500_000, "{v}");
    assert!(
        v["RepoDigests"][0].as_str().unwrap().contains("@sha256:"),
        "{v}"
    );
    // The layer is really there, busybox and all.
    let lower = v["GraphDriver"]["Data"]["LowerDir"]
        .as_str()
        .unwrap()
        .to_string();
    let bb = std::path::Path::new(lower.split(':').next().unwrap()).join("bin/busybox");
    assert!(bb.is_file(), "{}", bb.display());

    // By id prefix too, and a clear error for what does not exist.
    let id = v["Id"].as_str().unwrap().to_string();
    let by_prefix = inspect(&mut d.client, &id[7..19]).await.unwrap();
    assert_eq!(by_prefix["Id"], v["Id"]);
    let e = inspect(&mut d.client, "no/such:image").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("no/such:image"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_image_or_a_bad_reference_says_so() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-pullbad");
    let reg = Registry::start(&env);
    let mut d = Imaged::start(&env).await;
    let e = pull(&mut d.client, &reg.reference("berth/nothing:here"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    assert!(e.message().contains("berth/nothing"), "{e}");
    let e = pull(&mut d.client, "berth/BusyBox").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = pull_platform(
        &mut d.client,
        &reg.reference("berth/busybox:multi"),
        "linux/s390x",
    )
    .await
    .unwrap_err();
    assert!(
        e.message().contains("linux/amd64"),
        "the available platforms are listed: {e}"
    );
    assert!(list(&mut d.client).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmi_follows_dockers_rules_and_prune_frees_what_df_promised() {
    if !can_run() {
        return;
    }
    let env = TestEnv::new("imaged-rmi");
    let reg = Registry::start(&env);
    let mut d = Imaged::start(&env).await;
    let a = reg.reference("berth/busybox:latest");
    pull(&mut d.client, &a).await.unwrap();
    d.client
        .tag(pb::TagRequest {
            source: a.clone(),
            target: "mine:1".into(),
        })
        .await
        .unwrap();
    // Two names: removing one only untags.
    let r = remove(&mut d.client, &["mine:1"], false).await;
    assert_eq!(r.lines, vec!["Untagged: mine:1".to_string()], "{r:?}");
    // Used by a container: refused without force.
    d.client
        .prepare(pb::PrepareRequest {
            key: "c1".into(),
            image: a.clone(),
        })
        .await
        .unwrap();
    let r = remove(&mut d.client, &[&a], false).await;
    assert!(
        r.errors[0].contains("must force") && r.errors[0].contains("c1"),
        "{r:?}"
    );
    d.client
        .remove_snapshot(pb::SnapshotRequest { key: "c1".into() })
        .await
        .unwrap();

    // df's reclaimable, prune's reclaimed and the disk agree.
    let before_du = du(&env.root());
    let u = usage(&mut d.client).await;
    assert_eq!(u.images, 1);
    assert!(u.reclaimable > 0 && u.reclaimable <= u.size, "{u:?}");
    let p = d
        .client
        .prune(pb::PruneRequest {
            all: true,
            filters: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.reclaimed, u.reclaimable, "{p:?} vs {u:?}");
    let freed_on_disk = before_du - du(&env.root());
    // The metadata database keeps its pages: allow its size, nothing more.
    let slack = std::fs::metadata(env.root().join("images.db"))
        .unwrap()
        .len();
    assert!(
        freed_on_disk + slack >= p.reclaimed && freed_on_disk <= p.reclaimed + slack,
        "du says {freed_on_disk} freed, prune says {}",
        p.reclaimed
    );
    assert!(list(&mut d.client).await.is_empty());
    let u = usage(&mut d.client).await;
    assert_eq!((u.images, u.blobs, u.snapshots), (0, 0, 0), "{u:?}");
}
