//! Registry credentials in Docker's `config.json` (`auths`), read for pulls and pushes and
//! written by `berth login` / `berth logout`, so `docker login` and `berth login` share them.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{Map, Value};

use super::config::DOCKER_HUB_API_HOST;
use super::error::{Error, ErrorKind};
use crate::reference::DEFAULT_REGISTRY;

/// The `auths` key Docker uses for Docker Hub (from the days of the v1 index).
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The value of an `Authorization: Basic` header.
    pub(crate) fn basic_header(&self) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{}:{}", self.username, self.password))
        )
    }
}

/// Never prints the password.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The `auths` key for `registry`: the registry as written in references, except Docker Hub.
pub fn credentials_key(registry: &str) -> String {
    if is_docker_hub(registry) {
        DOCKER_HUB_AUTH_KEY.to_string()
    } else {
        registry.to_string()
    }
}

fn is_docker_hub(host: &str) -> bool {
    matches!(
        host,
        DEFAULT_REGISTRY | "index.docker.io" | DOCKER_HUB_API_HOST
    )
}

/// The host a key names, as the docker CLI reads keys: without scheme and path, so
/// `https://reg.example:5000/v2/` is `reg.example:5000`.
fn key_host(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

/// Credentials for `registry` (or a mirror's `host[:port]`) from `config.json` in
/// `config_dir`; `None` when the file or the entry is missing.
pub fn load_credentials(config_dir: &Path, registry: &str) -> Result<Option<Credentials>, Error> {
    let path = config_dir.join("config.json");
    let Some(root) = read_config(&path)? else {
        return Ok(None);
    };
    let Some(auths) = root.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let wanted = credentials_key(registry);
    // The exact key first, then any key naming the same host (`https://reg:5000`), as the
    // docker CLI does.
    let entry = auths.get(&wanted).or_else(|| {
        auths.iter().find_map(|(k, v)| {
            let host = key_host(k);
            let same = host == registry || (is_docker_hub(registry) && is_docker_hub(host));
            same.then_some(v)
        })
    });
    let Some(entry) = entry else {
        return Ok(None);
    };
    let err = |detail: String| config_error("read", &path, detail);
    if let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        let decoded = BASE64
            .decode(auth.trim())
            .map_err(|e| err(format!("auths[{wanted:?}].auth: not base64: {e}")))?;
        let decoded = String::from_utf8(decoded)
            .map_err(|_| err(format!("auths[{wanted:?}].auth: not UTF-8")))?;
        let (user, pass) = decoded
            .split_once(':')
            .ok_or_else(|| err(format!("auths[{wanted:?}].auth: not user:password")))?;
        return Ok(Some(Credentials::new(user, pass)));
    }
    let field = |name: &str| entry.get(name).and_then(Value::as_str).unwrap_or("");
    let (user, pass) = (field("username"), field("password"));
    if user.is_empty() && pass.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials::new(user, pass)))
}

/// Writes `creds` for `registry` into `config.json` in `config_dir` (created 0700 when
/// missing), keeping every other entry and setting: the file is replaced atomically by a
/// 0600 temp file renamed over it. Returns the file's path.
pub fn store_credentials(
    config_dir: &Path,
    registry: &str,
    creds: &Credentials,
) -> Result<PathBuf, Error> {
    let path = config_dir.join("config.json");
    let mut root = read_config(&path)?.unwrap_or_default();
    let auths = root
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("made an object above");
    // Drop other spellings of the same registry so that the entry written is the one read.
    let key = credentials_key(registry);
    auths.retain(|k, _| k == &key || key_host(k) != key_host(&key));
    let mut entry = Map::new();
    entry.insert(
        "auth".into(),
        Value::String(BASE64.encode(format!("{}:{}", creds.username, creds.password))),
    );
    auths.insert(key, Value::Object(entry));
    write_config(config_dir, &path, &root)?;
    Ok(path)
}

/// Removes the entry for `registry` (every spelling of it). Returns whether there was one.
pub fn remove_credentials(config_dir: &Path, registry: &str) -> Result<bool, Error> {
    let path = config_dir.join("config.json");
    let Some(mut root) = read_config(&path)? else {
        return Ok(false);
    };
    let Some(auths) = root.get_mut("auths").and_then(Value::as_object_mut) else {
        return Ok(false);
    };
    let before = auths.len();
    let key = credentials_key(registry);
    auths.retain(|k, _| {
        let host = key_host(k);
        !(k == &key || host == registry || (is_docker_hub(registry) && is_docker_hub(host)))
    });
    if auths.len() == before {
        return Ok(false);
    }
    write_config(config_dir, &path, &root)?;
    Ok(true)
}

fn read_config(path: &Path) -> Result<Option<Map<String, Value>>, Error> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(config_error("read", path, e.to_string())),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(config_error("read", path, "not a JSON object".into())),
        Err(e) => Err(config_error("read", path, format!("invalid JSON: {e}"))),
    }
}

fn write_config(dir: &Path, path: &Path, root: &Map<String, Value>) -> Result<(), Error> {
    let err = |e: std::io::Error| config_error("write", path, e.to_string());
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?;
    }
    let mut text = serde_json::to_vec_pretty(root).expect("a JSON map serialises");
    text.push(b'\n');
    // Unique per process and call, so concurrent writers never share a temp file.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".config.json.{}.{seq}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(e)
    })
}

fn config_error(action: &'static str, path: &Path, detail: String) -> Error {
    Error::new(
        action,
        path.display(),
        ErrorKind::Config {
            path: path.to_path_buf(),
            detail,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_auth_and_username_password_entries() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("config.json"),
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "https://reg.example:5000/v2/": {"username": "u", "password": "p"},
                "empty.example": {}
            }, "credsStore": "none"}"#,
        )
        .unwrap();
        let hub = load_credentials(dir.path(), "docker.io").unwrap().unwrap();
        assert_eq!(hub, Credentials::new("hub", "secret"));
        let reg = load_credentials(dir.path(), "reg.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(reg, Credentials::new("u", "p"));
        assert_eq!(load_credentials(dir.path(), "empty.example").unwrap(), None);
        assert_eq!(load_credentials(dir.path(), "other.example").unwrap(), None);
        assert!(!format!("{hub:?}").contains("secret"));
    }

    #[test]
    fn missing_file_means_no_credentials_and_bad_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_credentials(dir.path(), "docker.io").unwrap(), None);
        fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let e = load_credentials(dir.path(), "docker.io")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("config.json") && e.contains("invalid JSON"),
            "{e}"
        );
    }

    #[test]
    fn store_keeps_other_settings_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("docker");
        fs::create_dir(&cfg).unwrap();
        fs::write(
            cfg.join("config.json"),
            r#"{"auths": {"http://reg.example:5000": {"auth": "b2xkOm9sZA=="}, "keep.example": {"auth": "a2VlcDprZWVw"}}, "psFormat": "table {{.ID}}"}"#,
        )
        .unwrap();
        let path =
            store_credentials(&cfg, "reg.example:5000", &Credentials::new("new", "pw:x")).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["psFormat"], "table {{.ID}}");
        assert_eq!(v["auths"]["keep.example"]["auth"], "a2VlcDprZWVw");
        assert!(v["auths"].get("http://reg.example:5000").is_none());
        assert_eq!(
            load_credentials(&cfg, "reg.example:5000").unwrap(),
            Some(Credentials::new("new", "pw:x"))
        );
        // No temp file left behind.
        assert_eq!(fs::read_dir(&cfg).unwrap().count(), 1);

        assert!(remove_credentials(&cfg, "reg.example:5000").unwrap());
        assert!(!remove_credentials(&cfg, "reg.example:5000").unwrap());
        assert_eq!(load_credentials(&cfg, "reg.example:5000").unwrap(), None);
        assert!(load_credentials(&cfg, "keep.example").unwrap().is_some());
    }

    #[test]
    fn store_creates_the_directory_and_uses_the_hub_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("new/.docker");
        store_credentials(&cfg, "docker.io", &Credentials::new("a", "b")).unwrap();
        assert_eq!(
            fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let v: Value = serde_json::from_slice(&fs::read(cfg.join("config.json")).unwrap()).unwrap();
        assert_eq!(v["auths"][DOCKER_HUB_AUTH_KEY]["auth"], "YTpi");
        assert!(remove_credentials(&cfg, "index.docker.io").unwrap());
    }
}
