//! containerd's shim command line: Go `flag`-style options (`-name value`, `-name=value`,
//! `--name value`, bare `-debug`) followed by an optional action (`start` or `delete`).

use anyhow::{bail, Result};

#[derive(Debug, Default, Clone)]
pub struct Args {
    pub namespace: String,
    pub id: String,
    pub address: String,
    pub publish_binary: String,
    pub bundle: String,
    pub debug: bool,
    pub action: Option<String>,
}

impl Args {
    pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Args> {
        let mut args = Args::default();
        let mut it = argv.into_iter().peekable();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix('-') else {
                if args.action.is_some() {
                    bail!("unexpected argument {arg:?} after action");
                }
                args.action = Some(arg);
                continue;
            };
            let flag = flag.strip_prefix('-').unwrap_or(flag);
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if name == "debug" || name == "v" {
                args.debug = !matches!(inline.as_deref(), Some("false" | "0"));
                if name == "v" {
                    println!("containerd-shim-berth-v2 {}", env!("CARGO_PKG_VERSION"));
                    std::process::exit(0);
                }
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => match it.next() {
                    Some(v) => v,
                    None => bail!("flag -{name} needs a value"),
                },
            };
            match name {
                "namespace" => args.namespace = value,
                "id" => args.id = value,
                "address" => args.address = value,
                "publish-binary" => args.publish_binary = value,
                "bundle" => args.bundle = value,
                // Flags newer containerd versions pass that this shim has no use for.
                "socket" | "ttrpc-address" => {}
                other => bail!("unknown flag -{other}"),
            }
        }
        Ok(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args> {
        Args::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn containerd_start_line() {
        let a = parse("-namespace ns -address /run/c.sock -publish-binary /usr/bin/containerd -id c1 -debug start").unwrap();
        assert_eq!(a.namespace, "ns");
        assert_eq!(a.address, "/run/c.sock");
        assert_eq!(a.publish_binary, "/usr/bin/containerd");
        assert_eq!(a.id, "c1");
        assert!(a.debug);
        assert_eq!(a.action.as_deref(), Some("start"));
    }

    #[test]
    fn delete_line_with_bundle_and_equals() {
        let a = parse("--namespace=ns -id=c1 -bundle /b delete").unwrap();
        assert_eq!(a.bundle, "/b");
        assert_eq!(a.id, "c1");
        assert_eq!(a.action.as_deref(), Some("delete"));
    }

    #[test]
    fn rejects_missing_value_and_unknown_flag() {
        assert!(parse("-id").is_err());
        assert!(parse("-bogus x").is_err());
        assert!(parse("start delete").is_err());
    }
}
