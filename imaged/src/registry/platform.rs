//! Platforms (`os/arch[/variant]`) and choosing one image from an index or manifest list,
//! normalised as containerd does so that `aarch64`, `arm64` and `arm64/v8` are one thing.

use std::fmt;
use std::str::FromStr;

use super::error::ErrorKind;
use super::manifest::{Descriptor, ImageIndex};

#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
            ..Platform::default()
        }
    }

    /// The platform this program runs on, named as images name it (`linux/amd64`).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "loongarch64" => "loong64",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, None).normalized()
    }

    /// Parses `--platform`: `os/arch[/variant]`, or `arch` alone (on Linux) or an OS alone
    /// (on this host's architecture), as containerd's `platforms.Parse`.
    pub fn parse(input: &str) -> Result<Platform, ErrorKind> {
        let bad = |reason: &str| ErrorKind::InvalidPlatform {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = input.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad("expected os/arch[/variant]"));
        }
        let valid = |p: &&str| {
            p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'.')
        };
        if !parts.iter().all(valid) {
            return Err(bad(
                "components are letters, digits, '_', '-' and '.' separated by '/'",
            ));
        }
        let p = match parts.as_slice() {
            [one] if KNOWN_OS.contains(&one.to_ascii_lowercase().as_str()) => {
                Platform::new(one, &Platform::host().architecture, None)
            }
            [one] => Platform::new("linux", one, None),
            [os, arch] => Platform::new(os, arch, None),
            [os, arch, variant] => Platform::new(os, arch, Some(variant)),
            _ => return Err(bad("expected os/arch[/variant]")),
        };
        Ok(p.normalized())
    }

    /// containerd's normalisation: lowercase, `x86_64` is `amd64`, `aarch64` is `arm64`
    /// whose `v8` is its default, `arm` is `v7` unless said otherwise.
    pub fn normalized(&self) -> Platform {
        let os = self.os.to_ascii_lowercase();
        let os = if os == "macos" { "darwin".into() } else { os };
        let mut arch = self.architecture.to_ascii_lowercase();
        let mut variant = self.variant.as_ref().map(|v| v.to_ascii_lowercase());
        match arch.as_str() {
            "i386" => {
                arch = "386".into();
                variant = None;
            }
            "x86_64" | "x86-64" | "amd64" => {
                arch = "amd64".into();
                if variant.as_deref() == Some("v1") {
                    variant = None;
                }
            }
            "aarch64" | "arm64" => {
                arch = "arm64".into();
                variant = match variant.as_deref() {
                    Some("8") | Some("v8") | Some("v8.0") => None,
                    Some("9") | Some("9.0") | Some("v9.0") => Some("v9".into()),
                    _ => variant,
                };
            }
            "armhf" => {
                arch = "arm".into();
                variant = Some("v7".into());
            }
            "armel" => {
                arch = "arm".into();
                variant = Some("v6".into());
            }
            "arm" => {
                variant = match variant.as_deref() {
                    None | Some("7") => Some("v7".into()),
                    Some(v @ ("5" | "6" | "8")) => Some(format!("v{v}")),
                    _ => variant,
                };
            }
            _ => {}
        }
        Platform {
            os,
            architecture: arch,
            variant: variant.filter(|v| !v.is_empty()),
            os_version: self.os_version.clone(),
            os_features: self.os_features.clone(),
        }
    }

    fn same_os_arch(&self, other: &Platform) -> bool {
        self.os == other.os && self.architecture == other.architecture
    }
}

const KNOWN_OS: &[&str] = &[
    "linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris", "illumos",
];

impl FromStr for Platform {
    type Err = ErrorKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Platform::parse(s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the manifest for `platform` from an index or manifest list: the exact platform
/// first; for 32-bit arm, an older variant the wanted one can run (v7 runs v6 and v5).
/// The error lists the platforms the index has.
pub fn resolve_platform<'a>(
    index: &'a ImageIndex,
    platform: &Platform,
) -> Result<&'a Descriptor, ErrorKind> {
    let wanted = platform.normalized();
    let candidates: Vec<(&Descriptor, Platform)> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref().map(|p| (d, p.normalized())))
        .collect();
    if let Some((d, _)) = candidates
        .iter()
        .find(|(_, p)| p.same_os_arch(&wanted) && p.variant == wanted.variant)
    {
        return Ok(d);
    }
    if wanted.architecture == "arm" {
        let order = ["v8", "v7", "v6", "v5"];
        let from = wanted
            .variant
            .as_deref()
            .and_then(|v| order.iter().position(|o| *o == v))
            .unwrap_or(1);
        for v in &order[from..] {
            if let Some((d, _)) = candidates
                .iter()
                .find(|(_, p)| p.same_os_arch(&wanted) && p.variant.as_deref() == Some(v))
            {
                return Ok(d);
            }
        }
    }
    let mut available: Vec<String> = candidates
        .iter()
        // Build attestations sit in indexes as `unknown/unknown`; they are no choice.
        .filter(|(_, p)| p.os != "unknown")
        .map(|(_, p)| p.to_string())
        .collect();
    available.dedup();
    Err(ErrorKind::NoMatchingPlatform {
        wanted: wanted.to_string(),
        available,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: None,
            manifests: platforms
                .iter()
                .enumerate()
                .map(|(i, (os, arch, variant))| Descriptor {
                    media_type: super::super::manifest::OCI_MANIFEST.into(),
                    digest: Digest::of(&[i as u8]),
                    size: 1,
                    platform: Some(Platform::new(os, arch, *variant)),
                    urls: Vec::new(),
                    annotations: Default::default(),
                })
                .collect(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn parses_and_normalises_like_containerd() {
        for (input, want) in [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("Linux/AMD64/v1", "linux/amd64"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/i386", "linux/386"),
            ("arm64", "linux/arm64"),
            ("windows/amd64", "windows/amd64"),
        ] {
            assert_eq!(Platform::parse(input).unwrap().to_string(), want, "{input}");
        }
        for bad in ["", "linux/", "/amd64", "linux/amd64/v1/x", "linux/am d64"] {
            let e = Platform::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid platform {bad:?}")), "{e}");
        }
    }

    #[test]
    fn host_is_linux_amd64_here() {
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(Platform::host().to_string(), "linux/amd64");
        }
    }

    #[test]
    fn picks_the_exact_platform_then_older_arm() {
        let idx = index(&[
            ("linux", "amd64", None),
            ("linux", "arm64", Some("v8")),
            ("linux", "arm", Some("v6")),
            ("unknown", "unknown", None),
        ]);
        let pick = |p: &str| {
            resolve_platform(&idx, &Platform::parse(p).unwrap()).map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64").unwrap(), idx.manifests[0].digest);
        assert_eq!(pick("linux/arm64").unwrap(), idx.manifests[1].digest);
        assert_eq!(pick("linux/aarch64/v8").unwrap(), idx.manifests[1].digest);
        assert_eq!(pick("linux/arm/v7").unwrap(), idx.manifests[2].digest);
        let e = pick("linux/s390x").unwrap_err().to_string();
        assert_eq!(
            e,
            "no image for platform linux/s390x; the index has linux/amd64, linux/arm64, linux/arm/v6"
        );
        let e = pick("linux/arm/v5").unwrap_err().to_string();
        assert!(e.contains("linux/arm/v5"), "{e}");
    }
}
