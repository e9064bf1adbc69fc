//! Runs a build plan. Stages go wave by wave; the stages of one wave are independent and
//! run concurrently (one future each, joined), which is where a multi-stage build gains
//! over Docker's classic builder. Each step is looked up in the cache first; only a miss
//! prepares a snapshot, runs a container or writes a layer.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex as StdMutex;

use berth_imaged::client::Client as ImagesClient;
use berth_proto::imaged as ipb;
use serde_json::{json, Value};

use super::cache::{Cache, Entry};
use super::context::{Context, SourceError};
use super::copy::*;
use super::fsops::{Attrs, Root};
use super::meta::*;
use super::run::*;
use super::{BuildError, BuildRequest, Built, Event, Reporter};
use crate::build::instructions::{Instruction, MountKind, Source as CopySource};
use crate::build::plan::{Base, ExpandedStep, PlannedStage, Scope, Step};
use crate::build::{self, Plan};
use crate::engine::containers::{names, rootfs};
use crate::engine::{daemons, networking, Engine};

/// The image a stage has reached, and its config (Docker's `config` object).
#[derive(Debug, Clone)]
pub(super) struct ImageState {
    /// `sha256:...`; empty for an empty image (`FROM scratch` before any layer).
    pub(super) id: String,
    pub(super) config: Value,
    /// `CMD` given in this stage: an ENTRYPOINT then keeps it (Docker resets an inherited one).
    pub(super) cmd_set: bool,
}

pub(super) struct StageResult<'p> {
    pub(super) state: ImageState,
    pub(super) scope: Scope<'p>,
    /// The key of the stage's last step: what a stage built on it chains from.
    pub(super) key: String,
}

/// What every stage of one build shares.
pub(super) struct Shared<'a> {
    pub(super) req: &'a BuildRequest,
    pub(super) ctx: &'a Context,
    pub(super) plan: &'a Plan,
    pub(super) report: Reporter,
    pub(super) images: ImagesClient,
    pub(super) engine: tokio::sync::Mutex<&'a mut Engine>,
    pub(super) root: PathBuf,
    pub(super) run: PathBuf,
    pub(super) cache: Cache,
    /// Images imaged holds, so that a cache entry naming a removed one is a miss without
    /// asking imaged once per step.
    pub(super) known: StdMutex<HashSet<String>>,
    pub(super) counters: StdMutex<(usize, usize)>,
    /// Step numbers: the first of each stage (its FROM).
    pub(super) first_step: BTreeMap<usize, usize>,
    pub(super) total: usize,
}

/// Builds the image `req` describes from `ctx`.
pub async fn build(
    engine: &mut Engine,
    req: &BuildRequest,
    ctx: &Context,
    report: Reporter,
) -> Result<Built, BuildError> {
    let dockerfile = build::parse(&req.dockerfile_name, &req.dockerfile)?;
    let plan = build::plan(&dockerfile, &req.options)?;
    for t in &req.tags {
        berth_imaged::reference::Reference::parse(t).map_err(|e| {
            BuildError::Context(format!(
                "invalid argument \"{t}\" for \"-t, --tag\" flag: {e}"
            ))
        })?;
    }
    if !plan.unused_build_args.is_empty() {
        report(Event::Message(format!(
            "[Warning] One or more build-args [{}] were not consumed",
            plan.unused_build_args.join(" ")
        )));
    }
    let root = engine.root.clone();
    let run = engine.run.clone();
    sweep_abandoned(engine, &run.join("build")).await;
    let mut images = engine
        .images()
        .await
        .map_err(|e| BuildError::Daemon(format!("{e:#}")))?
        .clone();
    let known: HashSet<String> = images
        .list(ipb::ListRequest {
            all: true,
            filters: Vec::new(),
        })
        .await?
        .into_inner()
        .images
        .into_iter()
        .map(|i| i.id)
        .collect();
    let mut first_step = BTreeMap::new();
    let mut total = 0;
    for s in &plan.stages {
        first_step.insert(s.index, total + 1);
        total += 1 + s.steps.len();
    }
    if !req.labels.is_empty() {
        total += 1;
    }
    let shared = Shared {
        req,
        ctx,
        plan: &plan,
        report: report.clone(),
        images,
        engine: tokio::sync::Mutex::new(engine),
        root: root.clone(),
        run,
        cache: Cache::new(&root),
        known: StdMutex::new(known),
        counters: StdMutex::new((0, 0)),
        first_step,
        total,
    };

    let mut results: BTreeMap<usize, StageResult> = BTreeMap::new();
    for wave in &plan.waves {
        let futures = wave.iter().map(|&i| {
            let stage = plan.stage(i).expect("waves hold planned stages");
            run_stage(&shared, stage, &results)
        });
        let done = futures::future::join_all(futures).await;
        for (&i, r) in wave.iter().zip(done) {
            results.insert(i, r?);
        }
    }
    let target = results
        .remove(&plan.target)
        .expect("the target stage was built");
    let mut state = target.state;
    if !req.labels.is_empty() {
        let number = total;
        report(Event::Step {
            number,
            total,
            text: format!(
                "LABEL {}",
                req.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        });
        let labels: Vec<(String, String)> = req.labels.clone().into_iter().collect();
        let instruction = Instruction::Label(labels);
        let comment = apply_config(&mut state, &instruction, "")
            .map_err(|m| BuildError::Context(format!("--label: {m}")))?;
        let key = build::cache::cache_key(
            &target.key,
            &instruction.to_string(),
            &BTreeMap::new(),
            None,
        );
        state.id = shared
            .cached_or(&key, || async {
                shared
                    .commit_config(&state, &nop(&state.config, &comment))
                    .await
            })
            .await?;
        report(Event::Image(state.id.clone()));
    }
    if state.id.is_empty() {
        // `FROM scratch` alone: still an image, with no layers.
        state.id = shared.commit_config(&state, "").await?;
    }
    let mut images = shared.images.clone();
    for t in &req.tags {
        images
            .tag(ipb::TagRequest {
                source: state.id.clone(),
                target: t.clone(),
            })
            .await?;
    }
    let (steps, cached) = *shared.counters.lock().expect("counters");
    Ok(Built {
        image_id: state.id,
        steps,
        cached,
    })
}

impl Shared<'_> {
    fn count(&self, cached: bool) {
        let mut c = self.counters.lock().expect("counters");
        c.0 += 1;
        if cached {
            c.1 += 1;
        }
    }

    pub(super) fn fail(&self, line: usize, message: impl Into<String>) -> BuildError {
        BuildError::Step {
            file: self.plan.file_name.clone(),
            line,
            message: message.into(),
        }
    }

    /// The cached image of `key` when it is still there, else what `make` commits, which
    /// is then recorded under `key`.
    async fn cached_or<F, Fut>(&self, key: &str, make: F) -> Result<String, BuildError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<String, BuildError>>,
    {
        if let Some(id) = self.lookup(key) {
            self.count(true);
            (self.report)(Event::UsingCache);
            return Ok(id);
        }
        let id = make().await?;
        self.record(key, &id)?;
        self.count(false);
        Ok(id)
    }

    fn lookup(&self, key: &str) -> Option<String> {
        if self.req.no_cache {
            return None;
        }
        let e = self.cache.get(key)?;
        self.known
            .lock()
            .expect("known")
            .contains(&e.image_id)
            .then_some(e.image_id)
    }

    fn record(&self, key: &str, id: &str) -> Result<(), BuildError> {
        self.known.lock().expect("known").insert(id.to_string());
        self.cache
            .put(
                key,
                &Entry {
                    image_id: id.to_string(),
                },
            )
            .map_err(|e| BuildError::io(&self.root.join("build-cache"), e))
    }

    pub(super) async fn commit_config(
        &self,
        state: &ImageState,
        created_by: &str,
    ) -> Result<String, BuildError> {
        let mut images = self.images.clone();
        Ok(images
            .commit(ipb::CommitRequest {
                parent: state.id.clone(),
                config_json: state.config.to_string(),
                created_by: created_by.to_string(),
                empty_layer: true,
                ..Default::default()
            })
            .await?
            .into_inner()
            .image_id)
    }

    /// The image `name`, pulled when absent (or always with `--pull`): its id and config.
    pub(super) async fn base_image(
        &self,
        name: &str,
        line: usize,
    ) -> Result<(String, Value), BuildError> {
        let mut images = self.images.clone();
        let inspect = |mut c: ImagesClient, name: String| async move {
            c.inspect(ipb::InspectRequest { image: name }).await
        };
        let mut found = if self.req.pull {
            None
        } else {
            match inspect(images.clone(), name.to_string()).await {
                Ok(r) => Some(r.into_inner()),
                Err(s) if s.code() == tonic::Code::NotFound => None,
                Err(s) => return Err(s.into()),
            }
        };
        if found.is_none() {
            (self.report)(Event::Message(format!("Pulling {name}...")));
            let pulled = async {
                let mut stream = images
                    .pull(ipb::PullRequest {
                        reference: name.to_string(),
                        platform: String::new(),
                    })
                    .await?
                    .into_inner();
                while let Some(m) = stream.message().await? {
                    if m.done && !m.message.is_empty() {
                        (self.report)(Event::Message(m.message.clone()));
                    }
                }
                Ok::<_, tonic::Status>(())
            }
            .await;
            if let Err(s) = pulled {
                return Err(self.fail(
                    line,
                    format!("base image {name} could not be pulled: {}", s.message()),
                ));
            }
            found = Some(inspect(images, name.to_string()).await?.into_inner());
        }
        let r = found.expect("found or pulled");
        let v: Value = serde_json::from_str(&r.json)
            .map_err(|e| BuildError::Daemon(format!("inspect {name}: {e}")))?;
        let id = v["Id"].as_str().unwrap_or_default().to_string();
        self.known.lock().expect("known").insert(id.clone());
        let config = match &v["Config"] {
            Value::Null => json!({}),
            c => c.clone(),
        };
        Ok((id, config))
    }
}

async fn run_stage<'p>(
    sh: &Shared<'p>,
    stage: &'p PlannedStage,
    results: &BTreeMap<usize, StageResult<'p>>,
) -> Result<StageResult<'p>, BuildError> {
    let mut number = sh.first_step[&stage.index];
    let from_text = sh
        .plan
        .stages
        .iter()
        .find(|s| s.index == stage.index)
        .map(|_| stage_from_text(sh, stage))
        .unwrap_or_default();
    (sh.report)(Event::Step {
        number,
        total: sh.total,
        text: from_text,
    });
    let (mut state, mut scope, mut parent_key) = match &stage.base {
        Base::Scratch => (
            ImageState {
                id: String::new(),
                config: json!({}),
                cmd_set: false,
            },
            sh.plan.scope(stage, &[]),
            "scratch".to_string(),
        ),
        Base::Image(name) => {
            let (id, config) = sh.base_image(name, stage.line).await?;
            let env = env_pairs(&config);
            (
                ImageState {
                    id: id.clone(),
                    config,
                    cmd_set: false,
                },
                sh.plan.scope(stage, &env),
                id,
            )
        }
        Base::Stage(i) => {
            let r = &results[i];
            let mut state = r.state.clone();
            state.cmd_set = false;
            (state, r.scope.clone(), r.key.clone())
        }
    };
    if !state.id.is_empty() {
        (sh.report)(Event::Image(state.id.clone()));
    }
    // A base image's ONBUILD triggers run first, as part of its FROM; the image this stage
    // makes does not inherit them (Docker).
    if let Base::Image(_) = stage.base {
        let triggers: Vec<String> = state.config["OnBuild"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !triggers.is_empty() {
            (sh.report)(Event::Message(format!(
                "# Executing {} build trigger{}",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            )));
            state.config["OnBuild"] = Value::Null;
            for t in triggers {
                let instruction = build::parse_trigger(&t)
                    .map_err(|e| sh.fail(stage.line, format!("ONBUILD trigger {t}: {e}")))?;
                let step = Step {
                    line: stage.line,
                    text: t.clone(),
                    mount_from: match &instruction {
                        Instruction::Run(r) => vec![None; r.mounts.len()],
                        _ => Vec::new(),
                    },
                    copy_from: None,
                    instruction,
                };
                do_step(sh, &step, &mut scope, &mut state, &mut parent_key, results).await?;
            }
        }
    }
    for step in &stage.steps {
        number += 1;
        (sh.report)(Event::Step {
            number,
            total: sh.total,
            text: step.text.clone(),
        });
        do_step(sh, step, &mut scope, &mut state, &mut parent_key, results).await?;
    }
    Ok(StageResult {
        state,
        scope,
        key: parent_key,
    })
}

/// One step: from the cache, or run and committed; `state` and `parent_key` move on.
async fn do_step(
    sh: &Shared<'_>,
    step: &Step,
    scope: &mut Scope<'_>,
    state: &mut ImageState,
    parent_key: &mut String,
    results: &BTreeMap<usize, StageResult<'_>>,
) -> Result<(), BuildError> {
    let expanded = scope.expand(step)?;
    let digest = content_digest(sh, step, &expanded, results).await?;
    let key = expanded.cache_key(parent_key, digest.as_deref());
    let before = state.clone();
    let comment = apply_config(state, &expanded.instruction, &workdir(&before))
        .map_err(|m| sh.fail(step.line, m))?;
    let after = state.clone();
    let id = sh
        .cached_or(&key, || {
            execute(
                sh,
                step,
                &expanded,
                &before,
                &after,
                comment,
                digest.clone(),
                results,
            )
        })
        .await?;
    state.id = id;
    (sh.report)(Event::Image(state.id.clone()));
    *parent_key = key;
    Ok(())
}

fn stage_from_text(sh: &Shared<'_>, stage: &PlannedStage) -> String {
    let base = match &stage.base {
        Base::Scratch => "scratch".to_string(),
        Base::Image(n) => n.clone(),
        Base::Stage(i) => sh
            .plan
            .stage(*i)
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| i.to_string()),
    };
    match &stage.name {
        Some(n) => format!("FROM {base} AS {n}"),
        None => format!("FROM {base}"),
    }
}

fn env_pairs(config: &Value) -> Vec<(String, String)> {
    config["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str())
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (e.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// For COPY/ADD: a digest of what it would copy (context content, or the `--from` image);
/// for RUN: of what its bind mounts show. Errors name the step.
async fn content_digest(
    sh: &Shared<'_>,
    step: &Step,
    expanded: &ExpandedStep,
    results: &BTreeMap<usize, StageResult<'_>>,
) -> Result<Option<String>, BuildError> {
    match &expanded.instruction {
        Instruction::Copy(c) | Instruction::Add(c) => {
            let kw = expanded.instruction.keyword();
            match &step.copy_from {
                Some(base) => Ok(Some(from_image(sh, base, step, results).await?)),
                None => {
                    let mut all = Vec::new();
                    for s in &c.sources {
                        if let CopySource::Path(p) = s {
                            if kw == "ADD" && is_url(p) {
                                return Err(sh.fail(
                                    step.line,
                                    format!("ADD {p}: downloading URLs is not supported: this builder fetches nothing from the network; download the file into the context and ADD it from there"),
                                ));
                            }
                            let found = sh
                                .ctx
                                .tree
                                .resolve(p, true)
                                .map_err(|e| copy_failed(sh, step.line, kw, e))?;
                            all.extend(found);
                        }
                    }
                    let d = tokio::task::block_in_place(|| sh.ctx.tree.digest(&all))
                        .map_err(|e| sh.fail(step.line, format!("{kw} failed: {e}")))?;
                    Ok(Some(d))
                }
            }
        }
        Instruction::Run(r) => {
            let mut parts = Vec::new();
            for (m, from) in r.mounts.iter().zip(&step.mount_from) {
                if m.kind != MountKind::Bind {
                    continue;
                }
                match from {
                    Some(base) => parts.push(from_image(sh, base, step, results).await?),
                    None => {
                        let src = sh
                            .ctx
                            .tree
                            .resolve(m.source.as_deref().unwrap_or("."), true)
                            .map_err(|e| copy_failed(sh, step.line, "RUN --mount", e))?;
                        let d = tokio::task::block_in_place(|| sh.ctx.tree.digest(&src))
                            .map_err(|e| sh.fail(step.line, e.to_string()))?;
                        parts.push(d);
                    }
                }
            }
            Ok((!parts.is_empty()).then(|| parts.join(",")))
        }
        _ => Ok(None),
    }
}

pub(super) fn is_url(p: &str) -> bool {
    p.starts_with("http://") || p.starts_with("https://") || p.starts_with("git@")
}

pub(super) fn copy_failed(sh: &Shared<'_>, line: usize, kw: &str, e: SourceError) -> BuildError {
    let msg = match e {
        SourceError::NoMatch(p) => {
            format!("{kw} failed: no source files were specified (no match for {p})")
        }
        e => format!("{kw} failed: {e}"),
    };
    sh.fail(line, msg)
}

/// The image a `--from` names: a built stage's, or an image pulled when absent.
pub(super) async fn from_image(
    sh: &Shared<'_>,
    base: &Base,
    step: &Step,
    results: &BTreeMap<usize, StageResult<'_>>,
) -> Result<String, BuildError> {
    match base {
        Base::Stage(i) => Ok(results
            .get(i)
            .map(|r| r.state.id.clone())
            .expect("a --from stage is built in an earlier wave")),
        Base::Scratch => Ok(String::new()),
        Base::Image(name) => match sh.base_image(name, step.line).await {
            Ok((id, _)) => Ok(id),
            Err(_) => {
                let kw = match step.instruction {
                    Instruction::Run(_) => "RUN --mount",
                    _ => step.instruction.keyword(),
                };
                Err(sh.fail(
                    step.line,
                    format!("{kw} --from={name}: no stage or image named {name}"),
                ))
            }
        },
    }
}

/// A cache miss: run the step and commit its image.
#[allow(clippy::too_many_arguments)]
async fn execute(
    sh: &Shared<'_>,
    step: &Step,
    expanded: &ExpandedStep,
    before: &ImageState,
    after: &ImageState,
    comment: String,
    digest: Option<String>,
    results: &BTreeMap<usize, StageResult<'_>>,
) -> Result<String, BuildError> {
    match &expanded.instruction {
        Instruction::Run(r) => run_step(sh, step, expanded, r, before, results).await,
        Instruction::Copy(c) | Instruction::Add(c) => {
            let add = matches!(expanded.instruction, Instruction::Add(_));
            copy_step(sh, step, c, add, before, digest.as_deref(), results).await
        }
        Instruction::Workdir(_) => workdir_step(sh, step, after, &comment).await,
        _ => sh.commit_config(after, &nop(&after.config, &comment)).await,
    }
}

/// A step's scratch space under `$BERTH_RUN/build/<id>`: its bundle, mounts and the
/// snapshot keys it prepared, with our pid, so that a later build can clean up after a
/// build that was killed.
pub(super) struct Work {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) keys: Vec<String>,
    pub(super) mounts: Vec<PathBuf>,
    pub(super) sandbox: bool,
}

impl Work {
    pub(super) fn new(sh: &Shared<'_>) -> Result<Work, BuildError> {
        let id = names::new_id();
        let dir = sh.run.join("build").join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
        std::fs::write(dir.join("pid"), std::process::id().to_string())
            .map_err(|e| BuildError::io(&dir, e))?;
        Ok(Work {
            id,
            dir,
            keys: Vec::new(),
            mounts: Vec::new(),
            sandbox: false,
        })
    }

    /// A snapshot on `image`, mounted at `<dir>/<name>`.
    pub(super) async fn mount(
        &mut self,
        sh: &Shared<'_>,
        image: &str,
        name: &str,
    ) -> Result<(PathBuf, ipb::Mounts), BuildError> {
        let key = format!("build-{}-{name}", &self.id[..16]);
        self.keys.push(key.clone());
        std::fs::write(self.dir.join("keys"), self.keys.join("\n"))
            .map_err(|e| BuildError::io(&self.dir, e))?;
        let m = sh
            .images
            .clone()
            .prepare(ipb::PrepareRequest {
                key,
                image: image.to_string(),
            })
            .await?
            .into_inner();
        let target = self.dir.join(name);
        rootfs::mount_overlay(&m, &target).map_err(|e| BuildError::Daemon(e.to_string()))?;
        self.mounts.push(target.clone());
        Ok((target, m))
    }

    pub(super) fn unmount_all(&mut self) {
        for m in self.mounts.drain(..).rev() {
            detach(&m);
        }
    }

    pub(super) async fn cleanup(mut self, sh: &Shared<'_>) {
        self.unmount_all();
        let mut images = sh.images.clone();
        for k in &self.keys {
            let _ = images
                .remove_snapshot(ipb::SnapshotRequest { key: k.clone() })
                .await;
        }
        if self.sandbox {
            let mut e = sh.engine.lock().await;
            if let Ok(n) = e.networks().await {
                let _ = networking::remove_sandbox(n, &self.id).await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Unmounts whatever is mounted on `target`. Not `rootfs::unmount`, which judges by device
/// numbers: the bind mount of an empty image's upper dir sits on the same filesystem as
/// its mountpoint and would look unmounted.
pub(super) fn detach(target: &Path) {
    while nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

/// Cleans up after builds that were killed: their containers, mounts, snapshots and
/// sandboxes, found under `$BERTH_RUN/build/<id>` with a pid that no longer runs.
async fn sweep_abandoned(engine: &mut Engine, dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let d = e.path();
        let pid: Option<i32> = std::fs::read_to_string(d.join("pid"))
            .ok()
            .and_then(|p| p.trim().parse().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if alive {
            continue;
        }
        let id = e.file_name().to_string_lossy().into_owned();
        let _ = std::process::Command::new(daemons::sibling_binary("berth-runtime"))
            .arg("--root")
            .arg(engine.run.join("runtime"))
            .args(["delete", "--force", &id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        for sub in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            detach(&sub.path());
        }
        let keys = std::fs::read_to_string(d.join("keys")).unwrap_or_default();
        if let Ok(images) = engine.images().await {
            for k in keys.lines().filter(|k| !k.is_empty()) {
                let _ = images
                    .remove_snapshot(ipb::SnapshotRequest { key: k.to_string() })
                    .await;
            }
        }
        if d.join("sandbox").exists() {
            if let Ok(n) = engine.networks().await {
                let _ = networking::remove_sandbox(n, &id).await;
            }
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// Commits the step's snapshot as a layer (or config-only when `empty`).
pub(super) async fn commit_snapshot(
    sh: &Shared<'_>,
    work: &Work,
    config: &Value,
    created_by: &str,
    empty: bool,
) -> Result<String, BuildError> {
    let key = work.keys.first().cloned().unwrap_or_default();
    Ok(sh
        .images
        .clone()
        .commit(ipb::CommitRequest {
            key,
            config_json: config.to_string(),
            created_by: created_by.to_string(),
            empty_layer: empty,
            ..Default::default()
        })
        .await?
        .into_inner()
        .image_id)
}

async fn workdir_step(
    sh: &Shared<'_>,
    step: &Step,
    after: &ImageState,
    comment: &str,
) -> Result<String, BuildError> {
    let mut work = Work::new(sh)?;
    let r = async {
        let (root, m) = work.mount(sh, &after.id, "rootfs").await?;
        let dir = workdir(after);
        tokio::task::block_in_place(|| {
            Root::open(&root).and_then(|r| r.mkdir_all(&dir, Attrs::default()))
        })
        .map_err(|e| sh.fail(step.line, format!("WORKDIR {dir}: {e}")))?;
        work.unmount_all();
        // A layer only when the directory was not there: Docker commits an empty one then.
        let made = std::fs::read_dir(&m.upper)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        commit_snapshot(
            sh,
            &work,
            &after.config,
            // One space here, two elsewhere: Docker's own inconsistency, kept.
            &format!("{} #(nop) {comment}", shell(&after.config).join(" ")),
            !made,
        )
        .await
    }
    .await;
    work.cleanup(sh).await;
    r
}
