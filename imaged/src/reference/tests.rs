//! The cases of distribution/reference's reference_test.go and normalize_test.go, checked
//! against this parser (the expectations are theirs; sha512 is the one intended difference).

use super::*;

const F64: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

fn sha(hex: &str) -> Digest {
    format!("sha256:{hex}").parse().unwrap()
}

/// One row of distribution's `TestReferenceParse`: the grammar alone, no defaults.
struct Case {
    input: String,
    domain: Option<&'static str>,
    /// The full name (domain included), as `Named.Name()` gives it.
    name: String,
    tag: Option<&'static str>,
    digest: Option<Digest>,
}

fn ok(input: &str, domain: Option<&'static str>, name: &str) -> Case {
    Case {
        input: input.to_string(),
        domain,
        name: name.to_string(),
        tag: None,
        digest: None,
    }
}

impl Case {
    fn tag(mut self, tag: &'static str) -> Case {
        self.tag = Some(tag);
        self
    }
    fn digest(mut self, hex: &str) -> Case {
        self.digest = Some(sha(hex));
        self
    }
}

#[test]
fn grammar_accepts_what_distribution_accepts() {
    let cases = vec![
        ok("test_com", None, "test_com"),
        ok("test.com:tag", None, "test.com").tag("tag"),
        ok("test.com:5000", None, "test.com").tag("5000"),
        ok("test.com/repo:tag", Some("test.com"), "test.com/repo").tag("tag"),
        ok("test:5000/repo", Some("test:5000"), "test:5000/repo"),
        ok("test:5000/repo:tag", Some("test:5000"), "test:5000/repo").tag("tag"),
        ok(
            &format!("test:5000/repo@sha256:{F64}"),
            Some("test:5000"),
            "test:5000/repo",
        )
        .digest(F64),
        ok(
            &format!("test:5000/repo:tag@sha256:{F64}"),
            Some("test:5000"),
            "test:5000/repo",
        )
        .tag("tag")
        .digest(F64),
        ok("lowercase:Uppercase", None, "lowercase").tag("Uppercase"),
        // distribution's FIXME: an uppercase first component is taken as a registry.
        ok(
            "Uppercase/lowercase:tag",
            Some("Uppercase"),
            "Uppercase/lowercase",
        )
        .tag("tag"),
        ok(
            &format!("{}a:tag-puts-this-over-max", "a/".repeat(127)),
            Some("a"),
            &format!("{}a", "a/".repeat(127)),
        )
        .tag("tag-puts-this-over-max"),
        ok(
            "sub-dom1.foo.com/bar/baz/quux",
            Some("sub-dom1.foo.com"),
            "sub-dom1.foo.com/bar/baz/quux",
        ),
        ok(
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            Some("sub-dom1.foo.com"),
            "sub-dom1.foo.com/bar/baz/quux",
        )
        .tag("some-long-tag"),
        ok(
            "b.gcr.io/test.example.com/my-app:test.example.com",
            Some("b.gcr.io"),
            "b.gcr.io/test.example.com/my-app",
        )
        .tag("test.example.com"),
        ok(
            "xn--n3h.com/myimage:xn--n3h.com",
            Some("xn--n3h.com"),
            "xn--n3h.com/myimage",
        )
        .tag("xn--n3h.com"),
        ok("foo_bar.com:8080", None, "foo_bar.com").tag("8080"),
        ok("foo/foo_bar.com:8080", Some("foo"), "foo/foo_bar.com").tag("8080"),
        ok("192.168.1.1", None, "192.168.1.1"),
        ok("192.168.1.1:tag", None, "192.168.1.1").tag("tag"),
        ok("192.168.1.1:5000", None, "192.168.1.1").tag("5000"),
        ok("192.168.1.1/repo", Some("192.168.1.1"), "192.168.1.1/repo"),
        ok(
            "192.168.1.1:5000/repo",
            Some("192.168.1.1:5000"),
            "192.168.1.1:5000/repo",
        ),
        ok(
            "192.168.1.1:5000/repo:5050",
            Some("192.168.1.1:5000"),
            "192.168.1.1:5000/repo",
        )
        .tag("5050"),
        ok(
            "[2001:db8::1]/repo",
            Some("[2001:db8::1]"),
            "[2001:db8::1]/repo",
        ),
        ok(
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            Some("[2001:db8:1:2:3:4:5:6]"),
            "[2001:db8:1:2:3:4:5:6]/repo",
        )
        .tag("tag"),
        ok(
            "[2001:db8::1]:5000/repo",
            Some("[2001:db8::1]:5000"),
            "[2001:db8::1]:5000/repo",
        ),
        ok(
            "[2001:db8::1]:5000/repo:tag",
            Some("[2001:db8::1]:5000"),
            "[2001:db8::1]:5000/repo",
        )
        .tag("tag"),
        ok(
            &format!("[2001:db8::1]:5000/repo@sha256:{F64}"),
            Some("[2001:db8::1]:5000"),
            "[2001:db8::1]:5000/repo",
        )
        .digest(F64),
        ok(
            &format!("[2001:db8::1]:5000/repo:tag@sha256:{F64}"),
            Some("[2001:db8::1]:5000"),
            "[2001:db8::1]:5000/repo",
        )
        .tag("tag")
        .digest(F64),
        ok(
            "[2001:db8::]:5000/repo",
            Some("[2001:db8::]:5000"),
            "[2001:db8::]:5000/repo",
        ),
        ok("[::1]:5000/repo", Some("[::1]:5000"), "[::1]:5000/repo"),
        ok(
            &format!("example.com/{}:tag", "a".repeat(255)),
            Some("example.com"),
            &format!("example.com/{}", "a".repeat(255)),
        )
        .tag("tag"),
    ];
    for c in cases {
        let parts = parse_parts(&c.input).unwrap_or_else(|e| panic!("{:?}: {e}", c.input));
        assert_eq!(parts.domain, c.domain, "{}: domain", c.input);
        let name = match parts.domain {
            Some(d) => format!("{d}/{}", parts.path),
            None => parts.path.to_string(),
        };
        assert_eq!(name, c.name, "{}: name", c.input);
        assert_eq!(parts.tag, c.tag, "{}: tag", c.input);
        assert_eq!(parts.digest, c.digest, "{}: digest", c.input);
    }
}

/// Which rule a refused input must break.
type Expect = fn(&Rule) -> bool;

#[test]
fn grammar_refuses_what_distribution_refuses() {
    let cases: Vec<(String, Expect)> = vec![
        ("".into(), |r| *r == Rule::Empty),
        (":justtag".into(), |r| matches!(r, Rule::Format(_))),
        (format!("@sha256:{F64}"), |r| matches!(r, Rule::Format(_))),
        (
            "repo@sha256:ffffffffffffffffffffffffffffffffff".into(),
            |r| matches!(r, Rule::Digest(_)),
        ),
        (format!("validname@invaliddigest:{F64}"), |r| {
            matches!(r, Rule::Digest(_))
        }),
        ("Uppercase:tag".into(), |r| matches!(r, Rule::Uppercase(_))),
        ("test:5000/Uppercase/lowercase:tag".into(), |r| {
            matches!(r, Rule::Uppercase(_))
        }),
        (format!("domain/{}:tag", "a".repeat(256)), |r| {
            matches!(r, Rule::NameTooLong(_))
        }),
        ("aa/asdf$$^/aa".into(), |r| {
            matches!(r, Rule::PathComponent(_))
        }),
        ("[2001:db8::1]".into(), |r| matches!(r, Rule::Tag(_))),
        ("[2001:db8::1]:5000".into(), |r| {
            matches!(r, Rule::NoRepository(_))
        }),
        ("[2001:db8::1]:tag".into(), |r| {
            matches!(r, Rule::NoRepository(_))
        }),
        ("[fe80::1%eth0]:5000/repo".into(), |r| {
            matches!(r, Rule::Registry(_))
        }),
        ("[fe80::1%@invalidzone]:5000/repo".into(), |r| {
            matches!(r, Rule::Digest(_))
        }),
        // Accepted by Docker, refused here on purpose: only sha256 digests.
        (
            format!("xn--7o8h.com/myimage:xn--7o8h.com@sha512:{F64}{F64}"),
            |r| matches!(r, Rule::Digest(e) if e.reason.contains("sha256")),
        ),
    ];
    for (input, want) in cases {
        match parse_parts(&input) {
            Ok(p) => panic!("{input:?}: accepted as {p:?}"),
            Err(rule) => assert!(want(&rule), "{input:?}: unexpected rule {rule:?}"),
        }
    }
}

#[test]
fn docker_accepts_these_names() {
    for name in [
        "docker/docker",
        "library/debian",
        "debian",
        "docker.io/docker/docker",
        "docker.io/library/debian",
        "docker.io/debian",
        "index.docker.io/docker/docker",
        "index.docker.io/library/debian",
        "index.docker.io/debian",
        "127.0.0.1:5000/docker/docker",
        "127.0.0.1:5000/library/debian",
        "127.0.0.1:5000/debian",
        "192.168.0.1",
        "192.168.0.1:80",
        "192.168.0.1:8/debian",
        "192.168.0.2:25000/debian",
        "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
        "[fc00::1]:5000/docker",
        "[fc00::1]:5000/docker/docker",
        "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
        "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        "Docker/docker",
        "DOCKER/docker",
        // TestValidateRemoteName
        "docker-rules/docker",
        "docker---rules/docker",
        "doc/docker",
        "d/docker",
        "jess/t",
        "dock__er/docker",
    ] {
        if let Err(e) = Reference::parse(name) {
            panic!("{name:?} must parse: {e}");
        }
    }
}

#[test]
fn docker_refuses_these_names() {
    for name in [
        "https://github.com/docker/docker",
        "docker/Docker",
        "-docker",
        "-docker/docker",
        "-docker.io/docker/docker",
        "docker///docker",
        "docker.io/docker/Docker",
        "docker.io/docker///docker",
        "[fc00::1]",
        "[fc00::1]:5000",
        "fc00::1:5000/debian",
        "[fe80::1%eth0]:5000/debian",
        "[2001:db8:3:4::192.0.2.33]:5000/debian",
        "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
        // TestValidateRemoteName
        "docker-/docker",
        "-docker-/docker",
        "____/____",
        "_docker/_docker",
        "dock..er/docker",
        "dock_.er/docker",
        "dock-.er/docker",
        "docker/",
        "this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker",
        // TestInvalidReferenceComponents
        "-foo",
    ] {
        if let Ok(r) = Reference::parse(name) {
            panic!("{name:?} must not parse, got {r}");
        }
    }
}

#[test]
fn familiar_full_and_ambiguous_forms_agree() {
    // (remote name, familiar, full, ambiguous, registry) from TestParseRepositoryInfo.
    let table = [
        (
            "fooo/bar",
            "fooo/bar",
            "docker.io/fooo/bar",
            "index.docker.io/fooo/bar",
            "docker.io",
        ),
        (
            "library/ubuntu",
            "ubuntu",
            "docker.io/library/ubuntu",
            "library/ubuntu",
            "docker.io",
        ),
        (
            "nonlibrary/ubuntu",
            "nonlibrary/ubuntu",
            "docker.io/nonlibrary/ubuntu",
            "",
            "docker.io",
        ),
        (
            "other/library",
            "other/library",
            "docker.io/other/library",
            "",
            "docker.io",
        ),
        (
            "private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "127.0.0.1:8000/private/moonbase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "privatebase",
            "127.0.0.1:8000/privatebase",
            "127.0.0.1:8000/privatebase",
            "",
            "127.0.0.1:8000",
        ),
        (
            "private/moonbase",
            "example.com/private/moonbase",
            "example.com/private/moonbase",
            "",
            "example.com",
        ),
        (
            "privatebase",
            "example.com/privatebase",
            "example.com/privatebase",
            "",
            "example.com",
        ),
        (
            "private/moonbase",
            "example.com:8000/private/moonbase",
            "example.com:8000/private/moonbase",
            "",
            "example.com:8000",
        ),
        (
            "privatebasee",
            "example.com:8000/privatebasee",
            "example.com:8000/privatebasee",
            "",
            "example.com:8000",
        ),
        (
            "library/ubuntu-12.04-base",
            "ubuntu-12.04-base",
            "docker.io/library/ubuntu-12.04-base",
            "index.docker.io/library/ubuntu-12.04-base",
            "docker.io",
        ),
        (
            "library/foo",
            "foo",
            "docker.io/library/foo",
            "docker.io/foo",
            "docker.io",
        ),
        (
            "library/foo/bar",
            "library/foo/bar",
            "docker.io/library/foo/bar",
            "",
            "docker.io",
        ),
        (
            "store/foo/bar",
            "store/foo/bar",
            "docker.io/store/foo/bar",
            "",
            "docker.io",
        ),
        ("bar", "Foo/bar", "Foo/bar", "", "Foo"),
        ("bar", "FOO/bar", "FOO/bar", "", "FOO"),
    ];
    for (remote, familiar, full, ambiguous, registry) in table {
        let mut inputs = vec![familiar, full];
        if !ambiguous.is_empty() {
            inputs.push(ambiguous);
        }
        for input in inputs {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.familiar_name(), familiar, "{input}: familiar name");
            assert_eq!(r.name(), full, "{input}: full name");
            assert_eq!(r.registry(), registry, "{input}: registry");
            assert_eq!(r.repository(), remote, "{input}: repository");
            // Without tag or digest, the default tag shows in both forms.
            assert_eq!(r.to_string(), format!("{full}:latest"), "{input}");
            assert_eq!(r.familiar(), format!("{familiar}:latest"), "{input}");
        }
    }
}

#[test]
fn tag_and_digest_together() {
    let short =
        "busybox:latest@sha256:86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa";
    let r = Reference::parse(short).unwrap();
    assert_eq!(r.to_string(), format!("docker.io/library/{short}"));
    assert_eq!(r.familiar(), short);
    assert_eq!(r.tag(), Some("latest"));
    assert_eq!(
        r.digest(),
        Some(&sha(
            "86e0e091d0da6bde2456dbb48306f3956bbeb2eae1b5b9a43045843f69fe4aaa"
        ))
    );
    // The registry is asked for the digest, which pins the content.
    assert_eq!(r.tag_or_digest(), r.digest().unwrap().to_string());
}

#[test]
fn digest_only_reference_gets_no_default_tag() {
    let r = Reference::parse(&format!("127.0.0.1:5000/x@sha256:{F64}")).unwrap();
    assert_eq!(r.tag(), None);
    assert_eq!(r.to_string(), format!("127.0.0.1:5000/x@sha256:{F64}"));
    assert_eq!(r.tag_or_digest(), format!("sha256:{F64}"));
}

#[test]
fn any_reference_takes_names_digests_and_ids() {
    let id = "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9c";
    let table = [
        ("redis", "docker.io/library/redis:latest"),
        ("redis:latest", "docker.io/library/redis:latest"),
        (
            "docker.io/library/redis:latest",
            "docker.io/library/redis:latest",
        ),
        ("dmcgowan/myapp", "docker.io/dmcgowan/myapp:latest"),
        ("dmcgowan/myapp:latest", "docker.io/dmcgowan/myapp:latest"),
        (
            "docker.io/mcgowan/myapp:latest",
            "docker.io/mcgowan/myapp:latest",
        ),
        (
            // 63 hex characters: a name, not an id.
            "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
            "docker.io/library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9:latest",
        ),
        ("dbcc1", "docker.io/library/dbcc1:latest"),
    ];
    for (input, want) in table {
        match parse_any(input).unwrap() {
            AnyReference::Named(r) => assert_eq!(r.to_string(), want, "{input}"),
            other => panic!("{input}: {other:?}"),
        }
    }
    for input in [
        format!("redis@sha256:{id}"),
        format!("docker.io/library/redis@sha256:{id}"),
    ] {
        let AnyReference::Named(r) = parse_any(&input).unwrap() else {
            panic!("{input}: not a name");
        };
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/redis@sha256:{id}")
        );
    }
    for input in [id.to_string(), format!("sha256:{id}")] {
        assert_eq!(
            parse_any(&input).unwrap(),
            AnyReference::Digest(sha(id)),
            "{input}"
        );
    }
}

#[test]
fn registry_and_path_split_like_docker() {
    // TestNormalizedSplitHostname
    for (input, registry, path) in [
        ("test.com/foo", "test.com", "foo"),
        ("test_com/foo", "docker.io", "test_com/foo"),
        ("docker/migrator", "docker.io", "docker/migrator"),
        ("test.com:8080/foo", "test.com:8080", "foo"),
        ("test-com:8080/foo", "test-com:8080", "foo"),
        ("foo", "docker.io", "library/foo"),
        ("xn--n3h.com/foo", "xn--n3h.com", "foo"),
        ("xn--n3h.com:18080/foo", "xn--n3h.com:18080", "foo"),
        ("docker.io/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo", "docker.io", "library/foo"),
        ("docker.io/library/foo/bar", "docker.io", "library/foo/bar"),
        ("localhost/foo", "localhost", "foo"),
        ("localhost:5000/foo", "localhost:5000", "foo"),
        // A single component is a Docker Hub name even when it looks like a host.
        ("localhost", "docker.io", "library/localhost"),
        ("index.docker.io/foo", "docker.io", "library/foo"),
    ] {
        let r = Reference::parse(input).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.registry(), registry, "{input}");
        assert_eq!(r.repository(), path, "{input}");
    }
}

#[test]
fn with_tag_and_with_digest() {
    let r = Reference::parse("test.com:8000/foo").unwrap();
    assert_eq!(
        r.with_tag("TAG5").unwrap().to_string(),
        "test.com:8000/foo:TAG5"
    );
    let pinned = r.with_tag("TAG5").unwrap().with_digest(sha(F64));
    assert_eq!(
        pinned.to_string(),
        format!("test.com:8000/foo:TAG5@sha256:{F64}")
    );
    assert_eq!(
        pinned.by_digest(sha(F64)).to_string(),
        format!("test.com:8000/foo@sha256:{F64}")
    );
    let e = r.with_tag("-foo").unwrap_err();
    assert!(matches!(e.rule, Rule::Tag(_)), "{e}");
}

#[test]
fn tag_grammar_edges() {
    let r = Reference::parse(&format!("a:{}", "t".repeat(128))).unwrap();
    assert_eq!(r.tag().unwrap().len(), 128);
    for bad in [
        format!("a:{}", "t".repeat(129)),
        "a:.tag".into(),
        "a:-tag".into(),
        "a:".into(),
        "a:t@g".into(),
    ] {
        assert!(Reference::parse(&bad).is_err(), "{bad}");
    }
    assert!(Reference::parse("a:_t.a-g").is_ok());
}

#[test]
fn errors_name_the_input_and_the_rule() {
    let cases = [
        ("", "repository name must have at least one component"),
        ("Busybox:1", "repository name \"Busybox\" must be lowercase"),
        ("busybox:-1", "tag \"-1\""),
        ("a_b.c/d", "registry \"a_b.c\""),
        ("busybox@sha256:abc", "64 hex characters"),
        ("busybox@sha512:abc", "only sha256"),
        ("foo/../bar", "path component \"..\""),
        ("foo//bar", "empty path component"),
        (
            "1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "image id",
        ),
    ];
    for (input, want) in cases {
        let msg = Reference::parse(input).unwrap_err().to_string();
        assert!(
            msg.starts_with(&format!("invalid reference {input:?}: ")),
            "{msg}"
        );
        assert!(msg.contains(want), "{input:?}: {msg:?} lacks {want:?}");
    }
}

#[test]
fn serde_round_trip() {
    let r = Reference::parse("127.0.0.1:5000/berth/busybox:multi").unwrap();
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(json, "\"127.0.0.1:5000/berth/busybox:multi\"");
    assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), r);
    assert!(serde_json::from_str::<Reference>("\"Bad/Name\"").is_err());
}
