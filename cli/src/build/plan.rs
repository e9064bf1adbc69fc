//! The build plan: which stages a build needs, what each is based on, what it takes from
//! which other stage, and in which order they can run (stages of one wave are independent and
//! may build in parallel).
//!
//! Variables follow Docker's scoping:
//! - ARGs before the first FROM are global: only FROM lines see them, unless a stage declares
//!   them again (`ARG NAME` without a default takes the global value).
//! - An ARG is visible in its stage from its declaration on; `--build-arg` overrides its
//!   default. Between ARG and ENV of one name the later one wins (BuildKit puts ARG values
//!   into the build environment), so `ARG V` then `ENV V=x` reads `x`; the base image's
//!   Env comes first of all.
//! - A stage based on another stage starts with that stage's variables, ARGs included.
//! - The proxy args (`HTTP_PROXY`, `https_proxy`...) need no declaration; RUN gets them in
//!   its environment but they are left out of cache keys unless declared, as in Docker.
//! - The platform args (`TARGETPLATFORM`, `TARGETOS`, `TARGETARCH`, `TARGETVARIANT`,
//!   `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`, `BUILDVARIANT`) are global automatically, and
//!   inside a stage after `ARG TARGETARCH` and the like.
//!
//! What depends on the base image's ENV cannot be decided here: the executor makes a
//! [`Scope`] per stage from the base image's Env (or clones the final scope of the stage it
//! is based on) and expands each [`Step`] with it in order.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use berth_imaged::reference::Reference;

use super::error::{Error, ErrorKind};
use super::instructions::{ArgDecl, Instruction};
use super::words::expand_word;
use super::{Command, Dockerfile};

/// What the user asked of the build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildOptions {
    /// `--target`: the stage to build; the last one when absent.
    pub target: Option<String>,
    /// `--build-arg NAME=value`.
    pub build_args: BTreeMap<String, String>,
    /// `--platform`: the target platform (`linux/arm64/v8`); the build platform when absent.
    pub platform: Option<String>,
    /// The platform the build runs on; this host's when absent.
    pub build_platform: Option<String>,
}

/// The args every build defines without an ARG for RUN's environment.
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What a stage starts from, or what a `--from` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base {
    /// `FROM scratch`: an empty filesystem and config.
    Scratch,
    /// An image reference, as written after expansion (`node:18-alpine`). When pulling it
    /// fails for a `--from`, report [`ErrorKind::NoSuchStage`].
    Image(String),
    /// An earlier stage (FROM) or any other stage (`--from`), by its index in the file.
    Stage(usize),
}

/// A build plan. Stages are identified by their index in the Dockerfile throughout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub file_name: String,
    pub escape: char,
    /// The stages the target needs, in Dockerfile order.
    pub stages: Vec<PlannedStage>,
    /// The index of the stage whose result is the image.
    pub target: usize,
    /// Stage indices in build order: every stage's dependencies are in earlier waves, and the
    /// stages of one wave do not depend on each other.
    pub waves: Vec<Vec<usize>>,
    /// `--build-arg`s that no ARG declares (Docker warns about them).
    pub unused_build_args: Vec<String>,
    build_args: BTreeMap<String, String>,
    /// Values of the global ARGs.
    globals: BTreeMap<String, String>,
    /// The platform args.
    automatic: BTreeMap<String, String>,
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStage {
    pub index: usize,
    pub name: Option<String>,
    /// The line of its FROM.
    pub line: usize,
    pub base: Base,
    /// The stage's platform: FROM's `--platform` expanded, or the target platform.
    pub platform: String,
    pub steps: Vec<Step>,
    /// Indices of the stages it needs (base and `--from`s), sorted.
    pub depends_on: Vec<usize>,
}

/// One instruction of a stage, raw, with what the plan resolved about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub line: usize,
    /// The instruction as written, for progress lines and errors.
    pub text: String,
    pub instruction: Instruction,
    /// For COPY `--from`: what it names.
    pub copy_from: Option<Base>,
    /// For RUN: what each mount's `from` names, aligned with the mounts.
    pub mount_from: Vec<Option<Base>>,
}

/// A step expanded against a stage's variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpandedStep {
    pub line: usize,
    /// The instruction with its words expanded; for ARG, each default replaced by the value
    /// the arg took.
    pub instruction: Instruction,
    /// The args the step depends on, for its cache key: for RUN every declared arg with a
    /// value (they are in its environment), otherwise those its words referred to.
    pub args_used: BTreeMap<String, String>,
    /// For RUN: the args to add to the process environment on top of the image's Env
    /// ([`Scope::arg_env`] plus the proxy args given as build args).
    pub run_env: Vec<(String, String)>,
}

impl ExpandedStep {
    /// The step's cache key; see [`super::cache::cache_key`].
    pub fn cache_key(&self, parent: &str, content_digest: Option<&str>) -> String {
        super::cache::cache_key(parent, &self.key_text(), &self.args_used, content_digest)
    }

    /// The instruction's text for its cache key. An ARG is keyed by its names only: a new
    /// value misses the cache where the value is used, not where it is declared (Docker).
    pub fn key_text(&self) -> String {
        match &self.instruction {
            Instruction::Arg(decls) => {
                let names: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
                format!("ARG {}", names.join(" "))
            }
            other => other.to_string(),
        }
    }
}

impl Plan {
    /// The planned stage with this Dockerfile index, if the target needs it.
    pub fn stage(&self, index: usize) -> Option<&PlannedStage> {
        self.stages.iter().find(|s| s.index == index)
    }

    /// The target stage.
    pub fn target_stage(&self) -> &PlannedStage {
        self.stage(self.target)
            .expect("the target is always planned")
    }

    /// The variables of `stage` before its first step, given the Env of its base image
    /// (`KEY=value` pairs split; empty for scratch). For a stage based on another stage, use
    /// a clone of that stage's final scope instead, as it carries the stage's ARGs too.
    pub fn scope<'p>(&'p self, _stage: &PlannedStage, base_env: &[(String, String)]) -> Scope<'p> {
        Scope {
            plan: self,
            env: base_env.to_vec(),
            args: BTreeMap::new(),
            vars: base_env
                .iter()
                .map(|(k, v)| (k.clone(), (v.clone(), Origin::Env)))
                .collect(),
        }
    }

    /// The value the global args and platform args give `name` in FROM lines.
    fn global(&self, name: &str) -> Option<String> {
        self.globals
            .get(name)
            .or_else(|| self.automatic.get(name))
            .cloned()
    }
}

/// The variables in force at one point of a stage. Expanding a step also applies what it
/// declares (ENV, ARG) to the scope, so steps must go through in order.
#[derive(Debug, Clone)]
pub struct Scope<'p> {
    plan: &'p Plan,
    /// The image config's Env: the base's, updated by ENV.
    env: Vec<(String, String)>,
    /// Declared args: `None` when declared without any value.
    args: BTreeMap<String, Option<String>>,
    /// What a `$name` reads: the last ENV or valued ARG of that name.
    vars: BTreeMap<String, (String, Origin)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Env,
    Arg,
}

impl Scope<'_> {
    /// A variable as the builder sees it.
    pub fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(|(v, _)| v.clone())
    }

    /// The image config's Env so far: the base image's, updated by the stage's ENVs.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The args in force with a value, which RUN gets in its environment on top of
    /// [`Scope::env`] (an ENV declared after an ARG hides it).
    pub fn arg_env(&self) -> Vec<(String, String)> {
        self.vars
            .iter()
            .filter(|(_, (_, origin))| *origin == Origin::Arg)
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// Expands a step and applies its ENV or ARG to the scope.
    pub fn expand(&mut self, step: &Step) -> Result<ExpandedStep, Error> {
        self.expand_instruction(&step.instruction, step.line)
    }

    /// As [`Scope::expand`], for an instruction that is not in the plan: an ONBUILD trigger
    /// of the base image (parse it with [`super::parse_trigger`]). `line` is for errors.
    pub fn expand_instruction(
        &mut self,
        instruction: &Instruction,
        line: usize,
    ) -> Result<ExpandedStep, Error> {
        let plan = self.plan;
        let fail = |e| Error::at(&plan.file_name, line, ErrorKind::Expand(e));
        let used = RefCell::new(BTreeMap::new());
        let lookup = |name: &str| {
            let (value, origin) = self.vars.get(name)?;
            if *origin == Origin::Arg {
                used.borrow_mut().insert(name.to_string(), value.clone());
            }
            Some(value.clone())
        };
        let mut run_env = Vec::new();
        let expanded = match instruction {
            Instruction::Arg(decls) => {
                let mut out = Vec::new();
                for d in decls {
                    let value = match (plan.build_args.get(&d.name), &d.default) {
                        (Some(v), _) => Some(v.clone()),
                        (None, Some(default)) => {
                            Some(expand_word(default, plan.escape, &lookup).map_err(fail)?)
                        }
                        (None, None) => plan.global(&d.name),
                    };
                    out.push(ArgDecl {
                        name: d.name.clone(),
                        default: value,
                    });
                }
                used.borrow_mut().clear();
                Instruction::Arg(out)
            }
            Instruction::Run(_) => {
                run_env = self.arg_env();
                used.borrow_mut().extend(run_env.iter().cloned());
                for name in PROXY_ARGS {
                    if let (false, Some(v)) =
                        (self.args.contains_key(name), plan.build_args.get(name))
                    {
                        run_env.push((name.to_string(), v.clone()));
                    }
                }
                instruction.clone()
            }
            other => other.expand(plan.escape, &lookup).map_err(fail)?,
        };
        // Values the config would refuse fail here, naming the line, before anything runs.
        let invalid = |m: String| Error::at(&plan.file_name, line, ErrorKind::Syntax(m));
        match &expanded {
            Instruction::Expose(ports) => {
                super::config::exposed_ports(ports).map_err(invalid)?;
            }
            Instruction::StopSignal(signal) => {
                super::config::stop_signal(signal).map_err(invalid)?;
            }
            _ => {}
        }
        // Applied after expanding, so `ENV A=2 B=$A` and `ARG A=2 B=$A` read the A from before.
        match &expanded {
            Instruction::Env(pairs) => {
                for (k, v) in pairs {
                    match self.env.iter_mut().find(|(name, _)| name == k) {
                        Some(entry) => entry.1 = v.clone(),
                        None => self.env.push((k.clone(), v.clone())),
                    }
                    self.vars.insert(k.clone(), (v.clone(), Origin::Env));
                }
            }
            Instruction::Arg(decls) => {
                for d in decls {
                    self.args.insert(d.name.clone(), d.default.clone());
                    if let Some(v) = &d.default {
                        self.vars.insert(d.name.clone(), (v.clone(), Origin::Arg));
                    }
                }
            }
            _ => {}
        }
        Ok(ExpandedStep {
            line,
            instruction: expanded,
            args_used: used.into_inner(),
            run_env,
        })
    }
}

/// Plans a build: resolves global ARGs and FROM lines, every `--from`, the stages the
/// target needs, and the waves they build in.
pub fn plan(dockerfile: &Dockerfile, options: &BuildOptions) -> Result<Plan, Error> {
    let file = dockerfile.file_name.as_str();
    let escape = dockerfile.directives.escape;
    let build_platform = options.build_platform.clone().unwrap_or_else(host_platform);
    let target_platform = options
        .platform
        .clone()
        .unwrap_or_else(|| build_platform.clone());
    let mut automatic = BTreeMap::new();
    for (prefix, platform) in [("TARGET", &target_platform), ("BUILD", &build_platform)] {
        let mut parts = platform.split('/');
        automatic.insert(format!("{prefix}PLATFORM"), platform.clone());
        automatic.insert(
            format!("{prefix}OS"),
            parts.next().unwrap_or("").to_string(),
        );
        automatic.insert(
            format!("{prefix}ARCH"),
            parts.next().unwrap_or("").to_string(),
        );
        automatic.insert(
            format!("{prefix}VARIANT"),
            parts.next().unwrap_or("").to_string(),
        );
    }
    let mut plan = Plan {
        file_name: file.to_string(),
        escape,
        stages: Vec::new(),
        target: 0,
        waves: Vec::new(),
        unused_build_args: Vec::new(),
        build_args: options.build_args.clone(),
        globals: BTreeMap::new(),
        automatic,
    };

    // Global ARGs, each default expanded with the ones before it.
    for command in &dockerfile.meta_args {
        let Instruction::Arg(decls) = &command.instruction else {
            continue;
        };
        for d in decls {
            let value = match (options.build_args.get(&d.name), &d.default) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => Some(
                    expand_word(default, escape, &|n| plan.global(n))
                        .map_err(|e| Error::at(file, command.line, e.into()))?,
                ),
                (None, None) => None,
            };
            if let Some(v) = value {
                plan.globals.insert(d.name.clone(), v);
            }
        }
    }

    let mut stages = Vec::new();
    for stage in &dockerfile.stages {
        let from = stage.from();
        let at = |kind| Error::at(file, stage.from.line, kind);
        let global = |n: &str| plan.global(n);
        let image = expand_word(&from.image, escape, &global).map_err(|e| at(e.into()))?;
        let explicit_platform = match &from.platform {
            Some(p) => Some(expand_word(p, escape, &global).map_err(|e| at(e.into()))?),
            None => None,
        };
        let base = if image.is_empty() {
            return Err(at(ErrorKind::Stage(format!(
                "base name ({}) should not be blank",
                from.image
            ))));
        } else if image == "scratch" {
            Base::Scratch
        } else if let Some(earlier) = dockerfile.stages[..stage.index]
            .iter()
            .find(|s| s.name.as_deref() == Some(image.as_str()))
        {
            Base::Stage(earlier.index)
        } else {
            Reference::parse(&image)
                .map_err(|e| at(ErrorKind::Stage(format!("base image: {e}"))))?;
            Base::Image(image)
        };
        // A stage built on a stage runs on that stage's platform unless told otherwise.
        let platform = match (explicit_platform, &base) {
            (Some(p), _) => p,
            (None, Base::Stage(i)) => stages
                .iter()
                .find(|s: &&PlannedStage| s.index == *i)
                .map_or_else(|| target_platform.clone(), |s| s.platform.clone()),
            (None, _) => target_platform.clone(),
        };
        let steps = steps(&plan, dockerfile, stage.index, &stage.commands)?;
        let mut depends_on = BTreeSet::new();
        if let Base::Stage(i) = base {
            depends_on.insert(i);
        }
        for step in &steps {
            for b in step
                .copy_from
                .iter()
                .chain(step.mount_from.iter().flatten())
            {
                if let Base::Stage(i) = b {
                    depends_on.insert(*i);
                }
            }
        }
        stages.push(PlannedStage {
            index: stage.index,
            name: stage.name.clone(),
            line: stage.from.line,
            base,
            platform,
            steps,
            depends_on: depends_on.into_iter().collect(),
        });
    }

    let target = match &options.target {
        None => stages.len() - 1,
        Some(t) => dockerfile
            .stages
            .iter()
            .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
            .ok_or_else(|| Error::file(file, ErrorKind::NoTarget(t.clone())))?,
    };
    plan.target = target;
    plan.waves = waves(dockerfile, &stages, target)?;
    let needed: BTreeSet<usize> = plan.waves.iter().flatten().copied().collect();
    plan.stages = stages
        .into_iter()
        .filter(|s| needed.contains(&s.index))
        .collect();

    let declared: BTreeSet<&str> = dockerfile
        .meta_args
        .iter()
        .chain(dockerfile.stages.iter().flat_map(|s| s.commands.iter()))
        .filter_map(|c| match &c.instruction {
            Instruction::Arg(decls) => Some(decls.iter().map(|d| d.name.as_str())),
            _ => None,
        })
        .flatten()
        .collect();
    plan.unused_build_args = options
        .build_args
        .keys()
        .filter(|k| !declared.contains(k.as_str()) && !PROXY_ARGS.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok(plan)
}

/// The steps of one stage, with their `--from`s resolved. A `--from` is expanded with the
/// args in scope (the base image's ENV is not known yet, and Docker resolves stages before
/// it has images).
fn steps(
    plan: &Plan,
    dockerfile: &Dockerfile,
    current: usize,
    commands: &[Command],
) -> Result<Vec<Step>, Error> {
    let file = dockerfile.file_name.as_str();
    let mut scope = Scope {
        plan,
        env: Vec::new(),
        args: BTreeMap::new(),
        vars: BTreeMap::new(),
    };
    let mut out = Vec::new();
    for command in commands {
        let at = |kind| Error::at(file, command.line, kind);
        let resolve = |keyword: &str, raw: &str, scope: &Scope| -> Result<Base, Error> {
            let name =
                expand_word(raw, plan.escape, &|n| scope.lookup(n)).map_err(|e| at(e.into()))?;
            resolve_from(dockerfile, current, keyword, &name).map_err(at)
        };
        let mut step = Step {
            line: command.line,
            text: command.text.clone(),
            instruction: command.instruction.clone(),
            copy_from: None,
            mount_from: Vec::new(),
        };
        match &command.instruction {
            Instruction::Copy(c) => {
                if let Some(raw) = &c.from {
                    // BuildKit refuses variables here: stages are resolved before any
                    // stage's args are.
                    let literal = expand_word(raw, plan.escape, &|_| None).ok();
                    if literal.as_deref() != Some(raw.as_str()) {
                        return Err(at(ErrorKind::Stage(
                            "variable expansion is not supported for --from, define a new stage \
                             with FROM using ARG from global scope as a workaround"
                                .to_string(),
                        )));
                    }
                    step.copy_from =
                        Some(resolve_from(dockerfile, current, "COPY", raw).map_err(at)?);
                }
            }
            Instruction::Run(r) => {
                for m in &r.mounts {
                    let from = m
                        .from
                        .as_deref()
                        .map(|raw| resolve("RUN --mount", raw, &scope));
                    step.mount_from.push(from.transpose()?);
                }
            }
            // Only so that later `--from`s see the args; errors surface at execution,
            // where the base image's ENV is known.
            Instruction::Arg(_) | Instruction::Env(_) => {
                let _ = scope.expand_instruction(&command.instruction, command.line);
            }
            _ => {}
        }
        out.push(step);
    }
    Ok(out)
}

fn resolve_from(
    dockerfile: &Dockerfile,
    current: usize,
    keyword: &str,
    name: &str,
) -> Result<Base, ErrorKind> {
    let missing = || ErrorKind::NoSuchStage {
        instruction: keyword.to_string(),
        name: name.to_string(),
    };
    if let Ok(index) = name.parse::<usize>() {
        if index >= dockerfile.stages.len() {
            return Err(ErrorKind::Stage(format!(
                "{keyword} --from={name}: invalid stage index {index}"
            )));
        }
        if index == current {
            return Err(ErrorKind::Cycle(dockerfile.stages[index].label()));
        }
        return Ok(Base::Stage(index));
    }
    let lower = name.to_ascii_lowercase();
    if let Some(stage) = dockerfile
        .stages
        .iter()
        .find(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        if stage.index == current {
            return Err(ErrorKind::Cycle(lower));
        }
        return Ok(Base::Stage(stage.index));
    }
    if name == "scratch" {
        return Ok(Base::Scratch);
    }
    Reference::parse(name).map_err(|_| missing())?;
    Ok(Base::Image(name.to_string()))
}

/// The stages `target` needs, grouped into waves; refuses dependency cycles.
fn waves(
    dockerfile: &Dockerfile,
    stages: &[PlannedStage],
    target: usize,
) -> Result<Vec<Vec<usize>>, Error> {
    // Depth of each needed stage: 0 without dependencies, else one more than its deepest.
    let mut depth: BTreeMap<usize, usize> = BTreeMap::new();
    fn visit(
        i: usize,
        stages: &[PlannedStage],
        depth: &mut BTreeMap<usize, usize>,
        path: &mut Vec<usize>,
    ) -> Result<usize, usize> {
        if let Some(&d) = depth.get(&i) {
            return Ok(d);
        }
        if path.contains(&i) {
            return Err(i);
        }
        path.push(i);
        let mut d = 0;
        for &dep in &stages[i].depends_on {
            d = d.max(visit(dep, stages, depth, path)? + 1);
        }
        path.pop();
        depth.insert(i, d);
        Ok(d)
    }
    // Every stage, as BuildKit refuses a cycle even among stages the target does not need.
    for i in 0..stages.len() {
        visit(i, stages, &mut depth, &mut Vec::new()).map_err(|i| {
            let stage = &dockerfile.stages[i];
            Error::at(
                &dockerfile.file_name,
                stage.from.line,
                ErrorKind::Cycle(stage.label()),
            )
        })?;
    }
    let mut needed = BTreeSet::from([target]);
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        for &dep in &stages[i].depends_on {
            if needed.insert(dep) {
                todo.push(dep);
            }
        }
    }
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for i in needed {
        let d = depth[&i];
        if waves.len() <= d {
            waves.resize(d + 1, Vec::new());
        }
        waves[d].push(i);
    }
    Ok(waves)
}

/// This host's platform in OCI terms (`linux/amd64`, `linux/arm64`).
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm/v7",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    format!("linux/{arch}")
}
