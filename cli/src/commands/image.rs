//! Image commands: `pull`, `push`, `images`, `rmi`, `tag`, `image inspect`, `history`,
//! `image prune`, `login`, `logout`, `system df`, with Docker's output.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};

use anyhow::{bail, Result};
use berth_proto::imaged as pb;
use clap::Args;
use serde_json::{json, Value};

use berth_imaged::filters::glob;

use crate::engine::Engine;
use crate::format::human::{ago, size};
use crate::format::template::{align, Template};
use crate::Failure;

/// A gRPC status as Docker words a daemon's answer.
pub fn daemon_error(s: tonic::Status) -> Failure {
    Failure::new(1, format!("Error response from daemon: {}", s.message()))
}

#[derive(Args, Debug)]
pub struct PullArgs {
    /// Image to pull: NAME[:TAG|@DIGEST]
    pub image: String,
    /// Set platform if server is multi-platform capable (os/arch[/variant])
    #[arg(long, default_value = "")]
    pub platform: String,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
}

/// Docker's words for a layer's state.
fn status_text(s: &str) -> &str {
    match s {
        "waiting" => "Pulling fs layer",
        "downloading" => "Downloading",
        "downloaded" => "Download complete",
        "verifying" => "Verifying Checksum",
        "extracting" => "Extracting",
        "complete" => "Pull complete",
        "exists" => "Already exists",
        "preparing" => "Preparing",
        "pushing" => "Pushing",
        "pushed" => "Pushed",
        "mounted" => "Mounted from another repository",
        other => other,
    }
}

/// Progress of a pull or push: a redrawn bar per layer on a terminal, one line per change
/// of state otherwise (as Docker prints to a pipe).
struct Progress {
    tty: bool,
    quiet: bool,
    order: Vec<String>,
    lines: BTreeMap<String, String>,
    drawn: usize,
    /// Write to stderr (a pull that `run` makes), else stdout.
    stderr: bool,
}

impl Progress {
    fn new(quiet: bool) -> Progress {
        Progress {
            tty: std::io::stdout().is_terminal(),
            quiet,
            order: Vec::new(),
            lines: BTreeMap::new(),
            drawn: 0,
            stderr: false,
        }
    }

    fn to_stderr(quiet: bool) -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            stderr: true,
            ..Progress::new(quiet)
        }
    }

    fn bar(current: u64, total: u64) -> String {
        if total == 0 {
            return String::new();
        }
        let width = 50;
        let done = ((current.min(total) as f64 / total as f64) * width as f64) as usize;
        let arrow = if done < width { ">" } else { "" };
        format!(
            "[{}{arrow}{}]  {}/{}",
            "=".repeat(done.saturating_sub(usize::from(done < width))),
            " ".repeat(width - done),
            size(current),
            size(total)
        )
    }

    fn update(&mut self, m: &pb::PullProgress) {
        if self.quiet {
            return;
        }
        let mut out: Box<dyn Write> = if self.stderr {
            Box::new(std::io::stderr().lock())
        } else {
            Box::new(std::io::stdout().lock())
        };
        if m.id.is_empty() {
            if !m.message.is_empty() && !m.done {
                let _ = writeln!(out, "{}", m.message);
            }
            return;
        }
        let text = status_text(&m.status);
        let line = if self.tty && (m.status == "downloading" || m.status == "pushing") {
            format!("{}: {text} {}", m.id, Self::bar(m.current, m.total))
        } else {
            format!("{}: {text}", m.id)
        };
        if !self.tty {
            // One line per change of state; byte counts only move a terminal's bar.
            if m.status != "downloading"
                && m.status != "pushing"
                && self.lines.get(&m.id) != Some(&line)
            {
                let _ = writeln!(out, "{line}");
            }
            self.lines.insert(m.id.clone(), line);
            return;
        }
        if !self.order.contains(&m.id) {
            self.order.push(m.id.clone());
        }
        self.lines.insert(m.id.clone(), line);
        // Redraw the block of layer lines in place.
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        for id in &self.order {
            let _ = writeln!(out, "\x1b[2K{}", self.lines[id]);
        }
        self.drawn = self.order.len();
        let _ = out.flush();
    }
}

pub async fn pull(engine: &mut Engine, a: &PullArgs) -> Result<()> {
    let reference = berth_imaged::reference::Reference::parse(&a.image)
        .map_err(|e| Failure::new(1, format!("{e}")))?;
    let (last, downloaded) = pull_stream(engine, a, Progress::new(a.quiet)).await?;
    if !a.quiet {
        println!("{}", last.message);
        let what = if downloaded {
            "Downloaded newer image for"
        } else {
            "Image is up to date for"
        };
        println!("Status: {what} {}", reference.familiar());
    }
    println!("{reference}");
    Ok(())
}

/// The pull `run` and `create` make for a missing image: Docker's lines on stderr.
pub async fn pull_for_run(engine: &mut Engine, image: &str, platform: &str) -> Result<()> {
    let a = PullArgs {
        image: image.to_string(),
        platform: platform.to_string(),
        quiet: false,
    };
    let reference = berth_imaged::reference::Reference::parse(image)
        .map_err(|e| Failure::new(125, format!("{e}")))?;
    let (last, _) = pull_stream(engine, &a, Progress::to_stderr(false)).await?;
    eprintln!("{}", last.message);
    eprintln!(
        "Status: Downloaded newer image for {}",
        reference.familiar()
    );
    Ok(())
}

async fn pull_stream(
    engine: &mut Engine,
    a: &PullArgs,
    mut p: Progress,
) -> Result<(pb::PullProgress, bool)> {
    let mut stream = engine
        .images()
        .await?
        .pull(pb::PullRequest {
            reference: a.image.clone(),
            platform: a.platform.clone(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner();
    let mut last = None;
    let mut downloaded = false;
    while let Some(m) = stream.message().await.map_err(daemon_error)? {
        downloaded |= matches!(m.status.as_str(), "downloading" | "complete");
        p.update(&m);
        if m.done {
            last = Some(m);
        }
    }
    let Some(last) = last else {
        bail!("the pull of {} ended without a result", a.image);
    };
    Ok((last, downloaded))
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// NAME[:TAG]
    pub image: String,
    /// Suppress verbose output
    #[arg(short, long)]
    pub quiet: bool,
}

pub async fn push(engine: &mut Engine, a: &PushArgs) -> Result<()> {
    let mut stream = engine
        .images()
        .await?
        .push(pb::PushRequest {
            reference: a.image.clone(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner();
    let mut p = Progress::new(a.quiet);
    while let Some(m) = stream.message().await.map_err(daemon_error)? {
        p.update(&m);
        if m.done && !a.quiet {
            println!("{}", m.message);
        }
        if m.done && a.quiet {
            println!("{}", m.digest);
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ImagesArgs {
    /// Show all images (default hides intermediate images)
    #[arg(short, long)]
    pub all: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Show digests
    #[arg(long)]
    pub digests: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short, long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('table', 'table TEMPLATE', 'json', or a Go template)
    #[arg(long)]
    pub format: Option<String>,
    /// Only images of this repository[:tag]
    pub reference: Option<String>,
}

fn short_id(id: &str, no_trunc: bool) -> String {
    if no_trunc {
        id.to_string()
    } else {
        id.trim_start_matches("sha256:").chars().take(12).collect()
    }
}

/// One row per repository:tag (or one `<none>` row), as `docker images` lists them.
fn image_rows(images: &[pb::ImageSummary], a: &ImagesArgs) -> Vec<Value> {
    let mut rows = Vec::new();
    for i in images {
        let digest_of = |repo: &str| {
            i.repo_digests
                .iter()
                .find(|d| d.starts_with(&format!("{repo}@")))
                .and_then(|d| d.split_once('@'))
                .map(|(_, d)| d.to_string())
                .unwrap_or_else(|| "<none>".into())
        };
        let mut pairs: Vec<(String, String)> = i
            .repo_tags
            .iter()
            .map(|t| match t.rsplit_once(':') {
                Some((r, tag)) if !tag.contains('/') => (r.to_string(), tag.to_string()),
                _ => (t.clone(), "<none>".into()),
            })
            .collect();
        if pairs.is_empty() {
            pairs.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in pairs {
            // `docker images REPO[:TAG]` lists only the names that match, not every name of
            // a matching image.
            if let Some(pat) = &a.reference {
                let full = format!("{repo}:{tag}");
                if !glob(pat, &repo) && !glob(pat, &full) {
                    continue;
                }
            }
            rows.push(json!({
                "Repository": repo,
                "Tag": tag,
                "Digest": digest_of(&repo),
                "ID": short_id(&i.id, a.no_trunc),
                "CreatedSince": ago(i.created),
                "CreatedAt": i.created,
                "Size": size(i.size),
                "SharedSize": size(i.shared_size),
                "Containers": i.containers,
            }));
        }
    }
    rows
}

fn header(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" | "CreatedAt" => "CREATED".into(),
        "SharedSize" => "SHARED SIZE".into(),
        f => f.to_uppercase(),
    }
}

pub async fn images(engine: &mut Engine, a: &ImagesArgs) -> Result<()> {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let list = engine
        .images()
        .await?
        .list(pb::ListRequest {
            all: a.all,
            filters,
        })
        .await
        .map_err(daemon_error)?
        .into_inner()
        .images;
    if a.quiet {
        let mut seen = Vec::new();
        for i in &list {
            let id = short_id(&i.id, a.no_trunc);
            if !seen.contains(&id) {
                println!("{id}");
                seen.push(id);
            }
        }
        return Ok(());
    }
    let default = if a.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    crate::format::print_rows(&image_rows(&list, a), a.format.as_deref(), default, header)
}

#[derive(Args, Debug)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn rmi(engine: &mut Engine, a: &RmiArgs) -> Result<()> {
    let r = engine
        .images()
        .await?
        .remove(pb::RemoveRequest {
            images: a.images.clone(),
            force: a.force,
        })
        .await
        .map_err(daemon_error)?
        .into_inner();
    for l in &r.lines {
        println!("{l}");
    }
    if !r.errors.is_empty() {
        let msg = r
            .errors
            .iter()
            .map(|e| format!("Error response from daemon: {e}"))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(Failure::new(1, msg).into());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct TagArgs {
    pub source: String,
    pub target: String,
}

pub async fn tag(engine: &mut Engine, a: &TagArgs) -> Result<()> {
    engine
        .images()
        .await?
        .tag(pb::TagRequest {
            source: a.source.clone(),
            target: a.target.clone(),
        })
        .await
        .map_err(daemon_error)?;
    Ok(())
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long)]
    pub format: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

pub async fn inspect(engine: &mut Engine, a: &InspectArgs) -> Result<()> {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for image in &a.images {
        match engine
            .images()
            .await?
            .inspect(pb::InspectRequest {
                image: image.clone(),
            })
            .await
        {
            Ok(r) => found.push(serde_json::from_str::<Value>(&r.into_inner().json)?),
            Err(s) if s.code() == tonic::Code::NotFound => {
                errors.push(format!("Error: No such image: {image}"))
            }
            Err(s) => return Err(daemon_error(s).into()),
        }
    }
    match &a.format {
        Some(f) => {
            let t = Template::parse(f).map_err(|e| Failure::new(1, e.to_string()))?;
            for v in &found {
                println!(
                    "{}",
                    t.render(v).map_err(|e| Failure::new(1, e.to_string()))?
                );
            }
        }
        None => println!("{}", serde_json::to_string_pretty(&found)?),
    }
    if !errors.is_empty() {
        return Err(Failure::new(1, errors.join("\n")).into());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Print sizes and dates in human readable format
    #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set)]
    pub human: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short, long)]
    pub quiet: bool,
    /// Format output using a custom template
    #[arg(long)]
    pub format: Option<String>,
    pub image: String,
}

pub async fn history(engine: &mut Engine, a: &HistoryArgs) -> Result<()> {
    let entries = engine
        .images()
        .await?
        .history(pb::HistoryRequest {
            image: a.image.clone(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner()
        .entries;
    if a.quiet {
        for e in &entries {
            println!("{}", short_id(&e.id, a.no_trunc));
        }
        return Ok(());
    }
    let rows: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut by = e.created_by.clone();
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            let id = if e.id.starts_with("sha256:") {
                short_id(&e.id, a.no_trunc)
            } else {
                e.id.clone()
            };
            json!({
                "ID": id,
                "CreatedSince": if a.human { ago(e.created) } else { e.created.to_string() },
                "CreatedBy": by,
                "Size": if a.human { size(e.size) } else { e.size.to_string() },
                "Comment": e.comment,
            })
        })
        .collect();
    let hdr = |f: &str| match f {
        "ID" => "IMAGE".to_string(),
        "CreatedSince" => "CREATED".into(),
        "CreatedBy" => "CREATED BY".into(),
        f => f.to_uppercase(),
    };
    let fmt = a.format.clone().unwrap_or_else(|| {
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}".into()
    });
    let t = Template::parse(&fmt).map_err(|e| Failure::new(1, e.to_string()))?;
    let mut lines = Vec::new();
    if t.table {
        lines.push(t.header(hdr));
    }
    for r in &rows {
        lines.push(t.render(r).map_err(|e| Failure::new(1, e.to_string()))?);
    }
    if t.table {
        print!("{}", align(&lines));
    } else {
        lines.iter().for_each(|l| println!("{l}"));
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// Remove all unused images, not just dangling ones
    #[arg(short, long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

/// Docker's `[y/N]` prompt; no answer (not a terminal, end of input) is no.
pub fn confirm(warning: &str) -> bool {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

pub async fn prune(engine: &mut Engine, a: &PruneArgs) -> Result<()> {
    let warning = if a.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !a.force && !confirm(warning) {
        return Ok(());
    }
    let r = engine
        .images()
        .await?
        .prune(pb::PruneRequest {
            all: a.all,
            filters: a.filter.clone(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner();
    if !r.lines.is_empty() {
        println!("Deleted Images:");
        for l in &r.lines {
            println!("{l}");
        }
        println!();
    }
    println!("Total reclaimed space: {}", size(r.reclaimed));
    Ok(())
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Username
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password
    #[arg(short, long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Server (default: Docker Hub)
    pub server: Option<String>,
}

pub async fn login(engine: &mut Engine, a: &LoginArgs) -> Result<()> {
    let password = if a.password_stdin {
        if a.password.is_some() {
            return Err(
                Failure::new(1, "--password and --password-stdin are mutually exclusive").into(),
            );
        }
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        match &a.password {
            Some(p) => {
                eprintln!(
                    "WARNING! Using --password via the CLI is insecure. Use --password-stdin."
                );
                p.clone()
            }
            None => {
                return Err(Failure::new(
                    1,
                    "Must provide --password or --password-stdin (no interactive prompt yet)",
                )
                .into())
            }
        }
    };
    let Some(username) = a.username.clone() else {
        return Err(Failure::new(1, "Must provide --username with --password-stdin").into());
    };
    let r = engine
        .images()
        .await?
        .login(pb::LoginRequest {
            registry: a.server.clone().unwrap_or_default(),
            username,
            password,
        })
        .await
        .map_err(daemon_error)?
        .into_inner();
    eprintln!(
        "WARNING! Your password will be stored unencrypted in {}.",
        r.config_file
    );
    println!("Login Succeeded");
    Ok(())
}

#[derive(Args, Debug)]
pub struct LogoutArgs {
    pub server: Option<String>,
}

pub async fn logout(engine: &mut Engine, a: &LogoutArgs) -> Result<()> {
    let server = a.server.clone().unwrap_or_default();
    let r = engine
        .images()
        .await?
        .logout(pb::LogoutRequest {
            registry: server.clone(),
        })
        .await
        .map_err(daemon_error)?
        .into_inner();
    let shown = if server.is_empty() {
        "https://index.docker.io/v1/".to_string()
    } else {
        server
    };
    if r.removed {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(())
}
