//! A token server for distribution's token auth, as small as the registry allows: it checks
//! basic credentials, grants every scope asked for, and signs ES256 JWTs whose `x5c`
//! header carries a self-signed certificate that the registry's `rootcertbundle` holds.
//! distribution 2.8 verifies the chain, `iss`, `aud` (its `service`), `exp`/`nbf`, and the
//! signature with the certificate's key (see registry/auth/token/token.go).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

pub const SERVICE: &str = "berth-test-registry";
pub const ISSUER: &str = "berth-test-token-issuer";

pub struct TokenServer {
    port: u16,
    cert_file: PathBuf,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

struct Signer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    user: String,
    password: String,
    access_token_field: bool,
}

impl TokenServer {
    /// Listens on a free 127.0.0.1 port; writes the signing certificate to
    /// `dir/token-cert.pem`. With `access_token_field` it answers with `access_token`
    /// (the OAuth2 spelling) instead of `token`.
    pub fn start(dir: &Path, user: &str, password: &str, access_token_field: bool) -> TokenServer {
        let key_pair = rcgen::KeyPair::generate().expect("generate P-256 key");
        let params = rcgen::CertificateParams::new(vec!["berth-token-signer".to_string()])
            .expect("certificate params");
        let cert = params.self_signed(&key_pair).expect("self-sign");
        let cert_file = dir.join("token-cert.pem");
        std::fs::write(&cert_file, cert.pem()).expect("write certificate");
        let key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &SystemRandom::new(),
        )
        .expect("load key into ring");
        let signer = Arc::new(Signer {
            key,
            cert_der: cert.der().to_vec(),
            user: user.to_string(),
            password: password.to_string(),
            access_token_field,
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (requests2, stop2) = (requests.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let signer = signer.clone();
                let requests = requests2.clone();
                thread::spawn(move || {
                    if let Err(e) = serve(conn, &signer, &requests) {
                        eprintln!("token server: {e}");
                    }
                });
            }
        });
        TokenServer {
            port,
            cert_file,
            requests,
            stop,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// Token requests answered so far (granted or refused).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One request per connection (`Connection: close`): clients cope, and it keeps this
/// server a loop over lines.
fn serve(conn: TcpStream, signer: &Signer, requests: &AtomicUsize) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let target = request_line.split(' ').nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut conn = conn;
    if path != "/token" {
        return respond(&mut conn, "404 Not Found", &json!({"error": "not found"}));
    }
    let user = match authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
    {
        Some(pair) if pair == format!("{}:{}", signer.user, signer.password) => signer.user.clone(),
        Some(_) => {
            return respond(
                &mut conn,
                "401 Unauthorized",
                &json!({"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]}),
            )
        }
        None => {
            return respond(
                &mut conn,
                "401 Unauthorized",
                &json!({"errors": [{"code": "UNAUTHORIZED", "message": "anonymous access is not allowed"}]}),
            )
        }
    };
    let mut service = String::new();
    let mut access = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = form_decode(v);
        match k {
            "service" => service = v,
            "scope" => {
                for scope in v.split(' ').filter(|s| !s.is_empty()) {
                    // type:name:actions, where only the name may hold ':' (a port).
                    let (kind, rest) = scope.split_once(':').unwrap_or((scope, ""));
                    let (name, actions) = rest.rsplit_once(':').unwrap_or((rest, ""));
                    access.push(json!({
                        "type": kind,
                        "name": name,
                        "actions": actions.split(',').filter(|a| !a.is_empty()).collect::<Vec<_>>(),
                    }));
                }
            }
            _ => {}
        }
    }
    if service != SERVICE {
        return respond(
            &mut conn,
            "400 Bad Request",
            &json!({"error": format!("unknown service {service:?}")}),
        );
    }
    let token = signer.sign(&user, access);
    // `issued_at` is optional, and RFC 3339 when present; clients then count expiry from
    // when they received the token.
    let field = if signer.access_token_field {
        "access_token"
    } else {
        "token"
    };
    respond(
        &mut conn,
        "200 OK",
        &json!({field: token, "expires_in": 300}),
    )
}

impl Signer {
    fn sign(&self, subject: &str, access: Vec<serde_json::Value>) -> String {
        let now = unix_now();
        let header = json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", std::process::id()),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // JWS ES256 wants r||s, which is what ring's FIXED signing gives.
        let sig = self
            .key
            .sign(&SystemRandom::new(), signing_input.as_bytes())
            .expect("sign token");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn respond(conn: &mut TcpStream, status: &str, body: &serde_json::Value) -> std::io::Result<()> {
    let body = body.to_string();
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}

fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}
