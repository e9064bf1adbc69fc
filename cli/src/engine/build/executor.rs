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
use tokio::io::AsyncReadExt;

use super::cache::{Cache, Entry};
use super::context::{Context, Source, SourceError, Tree};
use super::fsops::{self, Attrs, Root};
use super::{BuildError, BuildRequest, Built, Event, Reporter};
use crate::build::instructions::{
    CommandLine, Copy as CopyInstr, Healthcheck, Instruction, MountKind, Network, Run,
    Source as CopySource,
};
use crate::build::plan::{Base, ExpandedStep, PlannedStage, Scope, Step};
use crate::build::{self, Plan};
use crate::engine::containers::bundle::{self, Inputs, NetNs};
use crate::engine::containers::record::{Config, HostConfig, MountPoint, Record};
use crate::engine::containers::{names, rootfs};
use crate::engine::{daemons, networking, Engine};

/// The image a stage has reached, and its config (Docker's `config` object).
#[derive(Debug, Clone)]
struct ImageState {
    /// `sha256:...`; empty for an empty image (`FROM scratch` before any layer).
    id: String,
    config: Value,
    /// `CMD` given in this stage: an ENTRYPOINT then keeps it (Docker resets an inherited one).
    cmd_set: bool,
}

struct StageResult<'p> {
    state: ImageState,
    scope: Scope<'p>,
    /// The key of the stage's last step: what a stage built on it chains from.
    key: String,
}

/// What every stage of one build shares.
struct Shared<'a> {
    req: &'a BuildRequest,
    ctx: &'a Context,
    plan: &'a Plan,
    report: Reporter,
    images: ImagesClient,
    engine: tokio::sync::Mutex<&'a mut Engine>,
    root: PathBuf,
    run: PathBuf,
    cache: Cache,
    /// Images imaged holds, so that a cache entry naming a removed one is a miss without
    /// asking imaged once per step.
    known: StdMutex<HashSet<String>>,
    counters: StdMutex<(usize, usize)>,
    /// Step numbers: the first of each stage (its FROM).
    first_step: BTreeMap<usize, usize>,
    total: usize,
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

    fn fail(&self, line: usize, message: impl Into<String>) -> BuildError {
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

    async fn commit_config(
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
    async fn base_image(&self, name: &str, line: usize) -> Result<(String, Value), BuildError> {
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

fn workdir(state: &ImageState) -> String {
    match state.config["WorkingDir"].as_str() {
        Some(w) if !w.is_empty() => w.to_string(),
        _ => "/".to_string(),
    }
}

fn shell(config: &Value) -> Vec<String> {
    match config["Shell"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => vec!["/bin/sh".to_string(), "-c".to_string()],
    }
}

/// The history line of a config-only step: the stage's SHELL, `#(nop)`, the comment.
fn nop(config: &Value, comment: &str) -> String {
    format!("{} #(nop)  {comment}", shell(config).join(" "))
}

/// Go's `%v` of a duration (`5s`, `1m30s`, `0s`), as Docker's history prints HEALTHCHECK.
fn go_duration(d: Option<std::time::Duration>) -> String {
    let ns = d.map_or(0, |d| d.as_nanos());
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return match ns {
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}µs", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let (h, rest) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{}s", rest as f64 / 1e9));
    out
}

/// Go's `%q` of an integer, a rune literal (`'\x02'`): how Docker's history prints Retries.
fn go_rune(n: u32) -> String {
    match char::from_u32(n) {
        Some(c) if c == '\'' || c == '\\' => format!("'\\{c}'"),
        Some(c) if (' '..='~').contains(&c) => format!("'{c}'"),
        _ if n < 0x100 => format!("'\\x{n:02x}'"),
        _ => format!("'\\u{n:04x}'"),
    }
}

/// Go's `%q` of a string slice, as Docker's history shows CMD and ENTRYPOINT.
fn go_quoted(args: &[String]) -> String {
    let q: Vec<String> = args
        .iter()
        .map(|a| serde_json::to_string(a).unwrap_or_default())
        .collect();
    format!("[{}]", q.join(" "))
}

/// Applies an instruction's config change to `state` and returns the history comment
/// Docker's classic builder writes for it (after `/bin/sh -c #(nop)  `).
fn apply_config(
    state: &mut ImageState,
    instr: &Instruction,
    workdir: &str,
) -> Result<String, String> {
    let c = &mut state.config;
    if !c.is_object() {
        *c = json!({});
    }
    let map = |c: &mut Value, key: &str| -> serde_json::Map<String, Value> {
        c[key].as_object().cloned().unwrap_or_default()
    };
    Ok(match instr {
        Instruction::Env(pairs) => {
            let mut env: Vec<String> = c["Env"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            for (k, v) in pairs {
                let entry = format!("{k}={v}");
                match env
                    .iter_mut()
                    .find(|e| e.split('=').next() == Some(k.as_str()))
                {
                    Some(e) => *e = entry,
                    None => env.push(entry),
                }
            }
            c["Env"] = json!(env);
            let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("ENV {}", shown.join(" "))
        }
        Instruction::Cmd(cmd) => {
            let args = cmd.to_args(&shell(c));
            c["Cmd"] = json!(args);
            state.cmd_set = true;
            format!("CMD {}", go_quoted(&args))
        }
        Instruction::Entrypoint(ep) => {
            let args = ep.to_args(&shell(c));
            c["Entrypoint"] = json!(args);
            if !state.cmd_set {
                c["Cmd"] = Value::Null;
            }
            format!("ENTRYPOINT {}", go_quoted(&args))
        }
        Instruction::Workdir(w) => {
            let dir = if w.starts_with('/') {
                w.clone()
            } else {
                format!("{}/{w}", workdir.trim_end_matches('/'))
            };
            let dir = clean_abs(&dir);
            c["WorkingDir"] = json!(dir);
            format!("WORKDIR {dir}")
        }
        Instruction::User(u) => {
            c["User"] = json!(u);
            format!("USER {u}")
        }
        Instruction::Expose(ports) => {
            let keys = build::config::exposed_ports(ports)?;
            let mut m = map(c, "ExposedPorts");
            for k in &keys {
                m.insert(k.clone(), json!({}));
            }
            c["ExposedPorts"] = Value::Object(m);
            format!("EXPOSE {}", ports.join(" "))
        }
        Instruction::Label(pairs) => {
            let mut m = map(c, "Labels");
            for (k, v) in pairs {
                m.insert(k.clone(), json!(v));
            }
            c["Labels"] = Value::Object(m);
            let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("LABEL {}", shown.join(" "))
        }
        Instruction::Volume(vols) => {
            let mut m = map(c, "Volumes");
            for v in vols {
                if v.trim().is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                m.insert(v.clone(), json!({}));
            }
            c["Volumes"] = Value::Object(m);
            format!("VOLUME [{}]", vols.join(" "))
        }
        Instruction::StopSignal(s) => {
            build::config::stop_signal(s)?;
            c["StopSignal"] = json!(s);
            format!("STOPSIGNAL {s}")
        }
        Instruction::Healthcheck(h) => {
            let test = build::config::healthcheck_test(h);
            let mut hc = json!({"Test": test});
            if let Healthcheck::Check {
                interval,
                timeout,
                start_period,
                start_interval,
                retries,
                ..
            } = h
            {
                for (k, d) in [
                    ("Interval", interval),
                    ("Timeout", timeout),
                    ("StartPeriod", start_period),
                    ("StartInterval", start_interval),
                ] {
                    if let Some(d) = d {
                        hc[k] = json!(d.as_nanos() as u64);
                    }
                }
                if let Some(r) = retries {
                    hc["Retries"] = json!(r);
                }
            }
            // Docker prints its HealthConfig struct with `%v`.
            let shown = match h {
                Healthcheck::None => r#"&{["NONE"] "0s" "0s" "0s" '\x00'}"#.to_string(),
                Healthcheck::Check {
                    interval,
                    timeout,
                    start_period,
                    retries,
                    ..
                } => format!(
                    "&{{{} {:?} {:?} {:?} {}}}",
                    go_quoted(&build::config::healthcheck_test(h)),
                    go_duration(*interval),
                    go_duration(*timeout),
                    go_duration(*start_period),
                    go_rune(retries.unwrap_or(0))
                ),
            };
            c["Healthcheck"] = hc;
            format!("HEALTHCHECK {shown}")
        }
        Instruction::Shell(s) => {
            c["Shell"] = json!(s);
            format!("SHELL [{}]", s.join(" "))
        }
        Instruction::Onbuild(o) => {
            let mut triggers: Vec<Value> = c["OnBuild"].as_array().cloned().unwrap_or_default();
            triggers.push(json!(o.text));
            c["OnBuild"] = json!(triggers);
            format!("ONBUILD {}", o.text)
        }
        Instruction::Arg(decls) => {
            let shown: Vec<String> = decls
                .iter()
                .map(|d| match &d.default {
                    Some(v) => format!("{}={v}", d.name),
                    None => d.name.clone(),
                })
                .collect();
            format!("ARG {}", shown.join(" "))
        }
        Instruction::Maintainer(m) => format!("MAINTAINER {m}"),
        Instruction::Run(_) | Instruction::Copy(_) | Instruction::Add(_) | Instruction::From(_) => {
            String::new()
        }
    })
}

fn clean_abs(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            x => parts.push(x),
        }
    }
    format!("/{}", parts.join("/"))
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

fn is_url(p: &str) -> bool {
    p.starts_with("http://") || p.starts_with("https://") || p.starts_with("git@")
}

fn copy_failed(sh: &Shared<'_>, line: usize, kw: &str, e: SourceError) -> BuildError {
    let msg = match e {
        SourceError::NoMatch(p) => {
            format!("{kw} failed: no source files were specified (no match for {p})")
        }
        e => format!("{kw} failed: {e}"),
    };
    sh.fail(line, msg)
}

/// The image a `--from` names: a built stage's, or an image pulled when absent.
async fn from_image(
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
struct Work {
    id: String,
    dir: PathBuf,
    keys: Vec<String>,
    mounts: Vec<PathBuf>,
    sandbox: bool,
}

impl Work {
    fn new(sh: &Shared<'_>) -> Result<Work, BuildError> {
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
    async fn mount(
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

    fn unmount_all(&mut self) {
        for m in self.mounts.drain(..).rev() {
            detach(&m);
        }
    }

    async fn cleanup(mut self, sh: &Shared<'_>) {
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
fn detach(target: &Path) {
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
async fn commit_snapshot(
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

async fn copy_step(
    sh: &Shared<'_>,
    step: &Step,
    c: &CopyInstr,
    add: bool,
    before: &ImageState,
    digest: Option<&str>,
    results: &BTreeMap<usize, StageResult<'_>>,
) -> Result<String, BuildError> {
    let kw = if add { "ADD" } else { "COPY" };
    let mut work = Work::new(sh)?;
    let r = async {
        let (root, _) = work.mount(sh, &before.id, "rootfs").await?;
        let from_tree = match &step.copy_from {
            Some(base) => {
                let image = from_image(sh, base, step, results).await?;
                let (dir, _) = work.mount(sh, &image, "from").await?;
                Some(Tree::root(dir))
            }
            None => None,
        };
        let tree = from_tree.as_ref().unwrap_or(&sh.ctx.tree);
        let mut sources: Vec<Result<Source, (String, String)>> = Vec::new();
        for s in &c.sources {
            match s {
                CopySource::Path(p) => {
                    for found in tree
                        .resolve(p, from_tree.is_none())
                        .map_err(|e| copy_failed(sh, step.line, kw, e))?
                    {
                        sources.push(Ok(found));
                    }
                }
                CopySource::Heredoc(h) => sources.push(Err((h.name.clone(), h.content.clone()))),
            }
        }
        let owner = match &c.chown {
            Some(u) => Some(
                tokio::task::block_in_place(|| bundle::resolve_user(&root, u, &[]))
                    .map(|(u, g, _)| (u, g))
                    .map_err(|e| sh.fail(step.line, format!("{kw} --chown={u}: {e}")))?,
            ),
            None => None,
        };
        let chmod = match &c.chmod {
            Some(m) => Some(
                u32::from_str_radix(m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| sh.fail(step.line, format!("invalid chmod parameter: {m}")))?,
            ),
            None => None,
        };
        let attrs = Attrs { owner, chmod };
        let dest = if c.dest.starts_with('/') {
            c.dest.clone()
        } else {
            format!("{}/{}", workdir(before).trim_end_matches('/'), c.dest)
        };
        let many = sources.len() > 1;
        tokio::task::block_in_place(|| copy_into(&root, tree, &sources, &dest, many, attrs, add))
            .map_err(|e| sh.fail(step.line, format!("{kw} failed: {e}")))?;
        work.unmount_all();
        let what = match (&step.copy_from, sources.first()) {
            (Some(_), _) | (_, None) => "multi",
            (None, Some(Ok(s))) if !many && !s.host.is_dir() => "file",
            (None, Some(Ok(_))) if !many => "dir",
            _ => "multi",
        };
        let hex = digest.unwrap_or_default().trim_start_matches("sha256:");
        let created_by = format!(
            "{} #(nop) {kw} {what}:{hex} in {} ",
            shell(&before.config).join(" "),
            c.dest
        );
        commit_snapshot(sh, &work, &before.config, &created_by, false).await
    }
    .await;
    work.cleanup(sh).await;
    r
}

/// The copy itself, into the mounted snapshot at `root`.
fn copy_into(
    root_path: &Path,
    tree: &Tree,
    sources: &[Result<Source, (String, String)>],
    dest: &str,
    many: bool,
    attrs: Attrs,
    add: bool,
) -> std::io::Result<()> {
    let root = Root::open(root_path)?;
    let owner = attrs.owner.unwrap_or((0, 0));
    let dest_is_dir = dest.ends_with('/') || many || root.is_dir(dest)?;
    for s in sources {
        match s {
            Err((name, content)) => {
                let (dir, _, file) = target(&root, dest, dest_is_dir, name, attrs)?;
                let mode = attrs.chmod.unwrap_or(0o644);
                fsops::write_file(&dir, &file, &mut content.as_bytes(), mode, owner)?;
            }
            Ok(src) => {
                let meta = std::fs::metadata(&src.host)?;
                if meta.is_dir() {
                    let dir = root.mkdir_all(dest, attrs)?;
                    tree.copy_dir_contents(src, &root, &dir, dest, attrs)?;
                } else if add && is_archive(&src.host) {
                    let dir = root.mkdir_all(dest, attrs)?;
                    extract(&root, &src.host, dest, &dir, attrs)?;
                } else {
                    let base = src
                        .host
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let (dir, dir_path, file) = target(&root, dest, dest_is_dir, &base, attrs)?;
                    tree.copy_entry(src, &root, &dir, &dir_path, &file, attrs)?;
                }
            }
        }
    }
    Ok(())
}

/// The directory (its fd and path in the root) and name a single file lands at.
fn target(
    root: &Root,
    dest: &str,
    dest_is_dir: bool,
    name: &str,
    attrs: Attrs,
) -> std::io::Result<(std::os::fd::OwnedFd, String, String)> {
    if dest_is_dir {
        return Ok((
            root.mkdir_all(dest, attrs)?,
            dest.to_string(),
            name.to_string(),
        ));
    }
    let trimmed = dest.trim_end_matches('/');
    let (parent, file) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    Ok((
        root.mkdir_all(parent, attrs)?,
        parent.to_string(),
        file.to_string(),
    ))
}

fn is_archive(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 262];
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let n = f.read(&mut head).unwrap_or(0);
    (n >= 2 && head[..2] == [0x1f, 0x8b]) || (n >= 262 && &head[257..262] == b"ustar")
}

/// `ADD x.tar[.gz] /dest`: the archive's entries written inside the root, each path
/// cleaned so that none climbs above `dest`.
fn extract(
    root: &Root,
    archive: &Path,
    dest: &str,
    _dest_fd: &std::os::fd::OwnedFd,
    attrs: Attrs,
) -> std::io::Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(archive)?;
    let mut head = [0u8; 2];
    let n = f.read(&mut head)?;
    let f = std::fs::File::open(archive)?;
    let reader: Box<dyn Read> = if n == 2 && head == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut a = tar::Archive::new(reader);
    for entry in a.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let rel = clean_abs(&path);
        if rel == "/" {
            continue;
        }
        let full = format!("{}{rel}", dest.trim_end_matches('/'));
        let (parent, name) = full.rsplit_once('/').unwrap_or(("", &full));
        let name = name.to_string();
        let dir = root.mkdir_all(parent, attrs)?;
        let h = entry.header();
        let owner = attrs
            .owner
            .unwrap_or((h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32));
        let mode = h.mode().unwrap_or(0o644);
        match h.entry_type() {
            tar::EntryType::Directory => {
                fsops::make_dir(&dir, &name, mode, owner)?;
            }
            tar::EntryType::Symlink => {
                if let Some(t) = entry.link_name()? {
                    fsops::symlink(&dir, &name, &t, owner)?;
                }
            }
            tar::EntryType::Link => {
                if let Some(t) = entry.link_name()? {
                    let t = format!(
                        "{}{}",
                        dest.trim_end_matches('/'),
                        clean_abs(&t.to_string_lossy())
                    );
                    fsops::hard_link(root, &t, &dir, &name)?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                fsops::write_file(&dir, &name, &mut entry, mode, owner)?;
            }
            _ => {}
        }
    }
    Ok(())
}

async fn run_step(
    sh: &Shared<'_>,
    step: &Step,
    expanded: &ExpandedStep,
    run: &Run,
    before: &ImageState,
    results: &BTreeMap<usize, StageResult<'_>>,
) -> Result<String, BuildError> {
    let mut work = Work::new(sh)?;
    let r = run_in(sh, step, expanded, run, before, results, &mut work).await;
    work.cleanup(sh).await;
    r
}

#[allow(clippy::too_many_arguments)]
async fn run_in(
    sh: &Shared<'_>,
    step: &Step,
    expanded: &ExpandedStep,
    run: &Run,
    before: &ImageState,
    results: &BTreeMap<usize, StageResult<'_>>,
    work: &mut Work,
) -> Result<String, BuildError> {
    let (root, snapshot) = work.mount(sh, &before.id, "rootfs").await?;
    let config = &before.config;
    // `RUN <<EOF` whose body starts with `#!` runs the body as a program (BuildKit): it is
    // mounted read-only under /dev/pipes, on the /dev tmpfs, so it never reaches the layer.
    let mut script_mount = None;
    let args = match (run.script(), &run.command, run.heredocs.as_slice()) {
        (Some(_), CommandLine::Shell(line), [h])
            if h.content.starts_with("#!")
                && crate::build::parser::heredoc_marker(line.trim()).is_some() =>
        {
            let file = work.dir.join("heredoc");
            std::fs::write(&file, &h.content).map_err(|e| BuildError::io(&file, e))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| BuildError::io(&file, e))?;
            let target = format!("/dev/pipes/{}", h.name);
            script_mount = Some(MountPoint {
                kind: "bind".into(),
                source: file.display().to_string(),
                destination: target.clone(),
                rw: false,
                ..Default::default()
            });
            vec![target]
        }
        (Some(script), _, _) => {
            let mut a = shell(config);
            a.push(script);
            a
        }
        (None, CommandLine::Exec(a), _) => a.clone(),
        (None, CommandLine::Shell(s), _) => vec![s.clone()],
    };
    let mut env: Vec<String> = config["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for (k, v) in &expanded.run_env {
        if !env.iter().any(|e| e.split('=').next() == Some(k.as_str())) {
            env.push(format!("{k}={v}"));
        }
    }
    let short = work.id[..12].to_string();

    // Mounts the RUN asked for.
    let mut mounts: Vec<MountPoint> = script_mount.into_iter().collect();
    for (n, (m, from)) in run.mounts.iter().zip(&step.mount_from).enumerate() {
        match m.kind {
            MountKind::Cache => {
                let id = m.id.clone().unwrap_or_else(|| m.target.clone());
                let dir = Cache::mount_dir(&sh.root, &id);
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(&dir, e))?;
                    use std::os::unix::fs::PermissionsExt;
                    let mode = m.mode.unwrap_or(0o755);
                    let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
                    let _ = std::os::unix::fs::chown(&dir, m.uid, m.gid);
                }
                mounts.push(MountPoint {
                    kind: "bind".into(),
                    source: dir.display().to_string(),
                    destination: m.target.clone(),
                    rw: !m.readonly,
                    ..Default::default()
                });
            }
            MountKind::Bind => {
                let src = m.source.clone().unwrap_or_else(|| ".".into());
                let host = match from {
                    Some(base) => {
                        let image = from_image(sh, base, step, results).await?;
                        let (dir, _) = work.mount(sh, &image, &format!("bind{n}")).await?;
                        Tree::root(dir).resolve_one(&src)
                    }
                    None => sh.ctx.tree.resolve_one(&src),
                }
                .map_err(|e| copy_failed(sh, step.line, "RUN --mount", e))?
                .host;
                mounts.push(MountPoint {
                    kind: "bind".into(),
                    source: host.display().to_string(),
                    destination: m.target.clone(),
                    rw: !m.readonly,
                    ..Default::default()
                });
            }
            MountKind::Tmpfs => mounts.push(MountPoint {
                kind: "tmpfs".into(),
                destination: m.target.clone(),
                options: m
                    .size
                    .map(|s| vec![format!("size={s}")])
                    .unwrap_or_default(),
                ..Default::default()
            }),
        }
    }

    // The network: a netd sandbox on `bridge` by default, a fresh namespace with only
    // loopback for `none`, the host's when asked for.
    let mode = match run.network {
        Some(Network::None) => "none".to_string(),
        Some(Network::Host) => "host".to_string(),
        _ => match sh.req.network.as_str() {
            "" | "default" => "bridge".to_string(),
            n => n.to_string(),
        },
    };
    let (netns, resolv, hosts) = match mode.as_str() {
        "none" => (
            NetNs::New,
            String::new(),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string(),
        ),
        "host" => (
            NetNs::Host,
            std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        ),
        network => {
            std::fs::write(work.dir.join("sandbox"), "")
                .map_err(|e| BuildError::io(&work.dir, e))?;
            work.sandbox = true;
            let mut e = sh.engine.lock().await;
            let netd = e
                .networks()
                .await
                .map_err(|e| BuildError::Daemon(format!("{e:#}")))?;
            let sb = networking::setup(
                netd,
                &networking::SandboxSpec {
                    container_id: work.id.clone(),
                    name: String::new(),
                    hostname: short.clone(),
                    ..Default::default()
                },
                &[networking::Attachment {
                    network: network.to_string(),
                    ..Default::default()
                }],
            )
            .await
            .map_err(|e| sh.fail(step.line, format!("RUN: network {network}: {e}")))?;
            (
                NetNs::Path(PathBuf::from(sb.netns_path)),
                sb.resolv_conf,
                sb.hosts,
            )
        }
    };
    let mut etc = vec![
        (work.dir.join("resolv.conf"), "/etc/resolv.conf"),
        (work.dir.join("hosts"), "/etc/hosts"),
    ];
    std::fs::write(&etc[0].0, resolv).map_err(|e| BuildError::io(&work.dir, e))?;
    std::fs::write(&etc[1].0, hosts).map_err(|e| BuildError::io(&work.dir, e))?;
    if mode != "host" {
        let p = work.dir.join("hostname");
        std::fs::write(&p, format!("{short}\n")).map_err(|e| BuildError::io(&p, e))?;
        etc.push((p, "/etc/hostname"));
    }

    let rec = Record {
        id: work.id.clone(),
        config: Config {
            hostname: short.clone(),
            user: config["User"].as_str().unwrap_or_default().to_string(),
            env,
            cmd: args.clone(),
            working_dir: workdir(before),
            ..Default::default()
        },
        host: HostConfig {
            network_mode: mode.clone(),
            ..Default::default()
        },
        mounts,
        ..Default::default()
    };
    let security = crate::engine::containers::wiring::security(&rec)
        .map_err(|e| sh.fail(step.line, e.to_string()))?;
    let spec = bundle::spec(
        &rec,
        &Inputs {
            rootfs: &root,
            netns,
            etc_files: etc,
            annotations: BTreeMap::new(),
            cgroups_path: format!("/{}/build-{}", cgroup_parent(), work.id),
            security,
        },
    )
    .map_err(|e| sh.fail(step.line, e.to_string()))?;
    let config_path = work.dir.join("config.json");
    std::fs::write(&config_path, serde_json::to_vec(&spec).expect("json"))
        .map_err(|e| BuildError::io(&config_path, e))?;

    let mountpoints = missing_mountpoints(&root, &spec);
    (sh.report)(Event::Running(short.clone()));
    let code = run_container(sh, work).await?;
    (sh.report)(Event::Removed(short));
    work.unmount_all();
    remove_mountpoints(Path::new(&snapshot.upper), &snapshot.lowers, &mountpoints);
    let command = args.join(" ");
    if code != 0 {
        return Err(BuildError::RunFailed {
            file: sh.plan.file_name.clone(),
            line: step.line,
            command,
            code,
        });
    }
    // Docker's history shows the build args the command saw: `|2 A=1 B=2 /bin/sh -c ...`.
    let created_by = if expanded.args_used.is_empty() {
        command
    } else {
        let args: Vec<String> = expanded
            .args_used
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("|{} {} {command}", args.len(), args.join(" "))
    };
    // A command that changed nothing commits no layer (Docker: `empty_layer`).
    let empty = std::fs::read_dir(&snapshot.upper).is_ok_and(|mut d| d.next().is_none());
    commit_snapshot(sh, work, config, &created_by, empty).await
}

/// The mount destinations of `spec` (and their parents) the image does not have: the
/// runtime creates them in the snapshot to mount on, and they must not end up in the layer
/// (Docker keeps /etc/hosts and the like in a layer it never commits).
fn missing_mountpoints(root: &Path, spec: &Value) -> Vec<String> {
    let Ok(r) = Root::open(root) else {
        return Vec::new();
    };
    let mut out: Vec<String> = Vec::new();
    for m in spec["mounts"].as_array().into_iter().flatten() {
        let Some(dest) = m["destination"].as_str() else {
            continue;
        };
        let mut path = String::new();
        for comp in dest.split('/').filter(|c| !c.is_empty()) {
            path.push('/');
            path.push_str(comp);
            if !out.contains(&path) && matches!(r.stat(&path), Ok(None)) {
                out.push(path.clone());
            }
        }
    }
    // Deepest first, so that a made directory is empty by the time it is removed.
    out.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    out
}

/// Removes the empty files and directories the runtime made as mountpoints from the
/// snapshot's upper directory. Anything with content is the command's and stays.
fn remove_mountpoints(upper: &Path, lowers: &[String], paths: &[String]) {
    for p in paths {
        let path = upper.join(p.trim_start_matches('/'));
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() && m.len() == 0 => {
                let _ = std::fs::remove_file(&path);
            }
            Ok(m) if m.is_dir() => {
                let _ = std::fs::remove_dir(&path);
            }
            _ => {}
        }
        // The directories overlayfs copied up to hold the mountpoint (`/etc` for
        // `/etc/hostname`): gone too when nothing else changed in them, so that a RUN that
        // wrote nothing commits no layer.
        let mut dir = Path::new(p.trim_start_matches('/')).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            if !unchanged_copy_up(upper, lowers, d) {
                break;
            }
            let _ = std::fs::remove_dir(upper.join(d));
            dir = d.parent();
        }
    }
}

/// Whether `rel` in the upper dir is an empty, non-opaque directory with the owner and
/// mode it has in the layers below: a copy-up with no change of its own.
fn unchanged_copy_up(upper: &Path, lowers: &[String], rel: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let up = upper.join(rel);
    let Ok(m) = std::fs::symlink_metadata(&up) else {
        return false;
    };
    if !m.is_dir() || std::fs::read_dir(&up).map_or(true, |mut d| d.next().is_some()) {
        return false;
    }
    let Ok(c) = std::ffi::CString::new(up.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: a NUL-terminated path and a null buffer of size 0 only ask for the length.
    let opaque = unsafe {
        libc::lgetxattr(
            c.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    if opaque >= 0 {
        return false;
    }
    lowers
        .iter()
        .find_map(|l| std::fs::symlink_metadata(Path::new(l).join(rel)).ok())
        .is_some_and(|l| {
            l.is_dir() && l.mode() == m.mode() && l.uid() == m.uid() && l.gid() == m.gid()
        })
}

/// `berth-runtime run` on the step's bundle, its output streamed as it comes. The exit
/// status of the container's process.
async fn run_container(sh: &Shared<'_>, work: &Work) -> Result<i32, BuildError> {
    let runtime = daemons::sibling_binary("berth-runtime");
    let mut cmd = tokio::process::Command::new(&runtime);
    cmd.arg("--root")
        .arg(sh.run.join("runtime"))
        .arg("run")
        .arg("--bundle")
        .arg(&work.dir)
        .arg(&work.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    // The bundle's root is `<dir>/rootfs`; the runtime reads `root.path` from the spec.
    let mut child = cmd
        .spawn()
        .map_err(|e| BuildError::Daemon(format!("start {}: {e}", runtime.display())))?;
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let report = sh.report.clone();
    let report2 = sh.report.clone();
    let a = async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = out.read(&mut buf).await {
            if n == 0 {
                break;
            }
            report(Event::Output(buf[..n].to_vec()));
        }
    };
    let b = async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = err.read(&mut buf).await {
            if n == 0 {
                break;
            }
            report2(Event::Output(buf[..n].to_vec()));
        }
    };
    let (_, _, status) = tokio::join!(a, b, child.wait());
    let status =
        status.map_err(|e| BuildError::Daemon(format!("wait for {}: {e}", runtime.display())))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

fn cgroup_parent() -> String {
    std::env::var("BERTH_CGROUP_PARENT")
        .ok()
        .map(|p| p.trim_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "berth".into())
}
