//! The shim's own command line, run as a binary: usage and version answered the way
//! containerd's Go shims answer them (Go's `flag` package: usage on stderr and exit status 0
//! for `-h`, `-help` and `--help`; `-v` for the version), and a command line the shim cannot
//! read refused with a message that names the flag and exit status 2. No root needed.

mod common;

use berth_tests::{run, Output, TestEnv};
use common::SHIM;

fn shim(args: &[&str]) -> Output {
    run(std::process::Command::new(SHIM).args(args))
}

/// Flags containerd passes, each as the usage lists it.
const LISTED: &[&str] = &[
    "  -address string\n",
    "  -bundle string\n",
    "  -debug\n",
    "  -h, -help\n",
    "  -id string\n",
    "  -namespace string\n",
    "  -publish-binary string\n",
    "  -socket string\n",
    "  -v, -version\n",
];

#[track_caller]
fn assert_usage(out: &Output) {
    out.assert_code(0);
    assert_eq!(
        out.stdout, "",
        "the usage goes to stderr, as Go's flag package puts it"
    );
    assert!(
        out.stderr
            .starts_with("Usage of containerd-shim-berth-v2:\n  containerd-shim-berth-v2 [flags] [start|delete]\n"),
        "{}",
        out.stderr
    );
    for flag in LISTED {
        assert!(
            out.stderr.contains(flag),
            "{flag:?} missing from\n{}",
            out.stderr
        );
    }
}

#[test]
fn help_flags_print_the_usage_and_exit_0() {
    for flag in ["-h", "-help", "--help"] {
        assert_usage(&shim(&[flag]));
    }
}

#[test]
fn version_flags_print_the_version_and_exit_0() {
    let want = format!("containerd-shim-berth-v2 {}\n", env!("CARGO_PKG_VERSION"));
    for flag in ["-v", "-version", "--version"] {
        let out = shim(&[flag]);
        out.assert_code(0);
        assert_eq!(out.stdout, want, "{flag}");
        assert_eq!(out.stderr, "", "{flag}");
    }
}

/// Among containerd's flags and before an action, -help and -v answer and do nothing else:
/// no serving shim, no files in the bundle.
#[test]
fn help_and_version_win_over_an_action() {
    let env = TestEnv::new("shimflags");
    let id = env.unique("c");
    let containerd_line = [
        "-namespace",
        "berth-test",
        "-address",
        "/nonexistent/containerd.sock",
        "-publish-binary",
        "/nonexistent/containerd",
        "-id",
        &id,
        "-debug",
    ];
    for (flag, help) in [
        ("-help", true),
        ("--help", true),
        ("-v", false),
        ("--version", false),
    ] {
        let out = run(env
            .command(SHIM)
            .args(containerd_line)
            .args([flag, "start"])
            .current_dir(env.path()));
        if help {
            assert_usage(&out);
        } else {
            out.assert_code(0);
            assert!(
                out.stdout.starts_with("containerd-shim-berth-v2 "),
                "{}",
                out.stdout
            );
        }
        for file in ["address", "shim.pid", "shim.log"] {
            assert!(!env.path().join(file).exists(), "{flag} start wrote {file}");
        }
    }
}

#[test]
fn a_flag_without_its_value_is_refused_by_name() {
    for (args, flag) in [
        (&["-id"][..], "-id"),
        (
            &["-namespace", "ns", "-id", "c1", "-publish-binary"][..],
            "-publish-binary",
        ),
        (&["--bundle"][..], "-bundle"),
    ] {
        let out = shim(args);
        out.assert_code(2);
        assert_eq!(
            out.stderr,
            format!(
                "containerd-shim-berth-v2: flag {flag} needs a value (-help lists the flags)\n"
            ),
            "{args:?}"
        );
        assert_eq!(out.stdout, "");
    }
}

#[test]
fn unknown_flags_and_actions_are_refused() {
    shim(&["-bogus", "x"])
        .assert_code(2)
        .assert_failure_mentioning("unknown flag -bogus");
    shim(&["-debug=maybe"])
        .assert_code(2)
        .assert_failure_mentioning("invalid boolean value \"maybe\" for -debug");
    shim(&["-id", "c1", "run"])
        .assert_code(2)
        .assert_failure_mentioning("unknown action \"run\"");
}
