//! Whole Dockerfiles through parse and plan, as the executor will use them.

use std::collections::BTreeMap;

use super::instructions::{CommandLine, Copy, Source};
use super::plan::{Base, ExpandedStep, PlannedStage};
use super::*;

fn options(pairs: &[(&str, &str)]) -> BuildOptions {
    BuildOptions {
        build_args: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        build_platform: Some("linux/amd64".into()),
        ..BuildOptions::default()
    }
}

fn planned(text: &str, options: &BuildOptions) -> Plan {
    let dockerfile = parse("Dockerfile", text).unwrap();
    plan(&dockerfile, options).unwrap()
}

/// Every step of a stage expanded in order on top of `base_env`.
fn expand_all(plan: &Plan, stage: &PlannedStage, base_env: &[(&str, &str)]) -> Vec<ExpandedStep> {
    let env: Vec<(String, String)> = base_env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut scope = plan.scope(stage, &env);
    stage
        .steps
        .iter()
        .map(|s| scope.expand(s).unwrap())
        .collect()
}

fn error(text: &str, options: &BuildOptions) -> String {
    match parse("Dockerfile", text) {
        Err(e) => e.to_string(),
        Ok(d) => plan(&d, options).unwrap_err().to_string(),
    }
}

const GETTING_STARTED: &str = r#"# syntax=docker/dockerfile:1

FROM node:18-alpine
WORKDIR /app
COPY . .
RUN yarn install --production
CMD ["node", "src/index.js"]
EXPOSE 3000
"#;

#[test]
fn getting_started() {
    let dockerfile = parse("Dockerfile", GETTING_STARTED).unwrap();
    assert_eq!(
        dockerfile.directives.syntax.as_deref(),
        Some("docker/dockerfile:1")
    );
    assert_eq!(dockerfile.stages.len(), 1);
    let plan = plan(&dockerfile, &options(&[])).unwrap();
    assert_eq!(plan.waves, [[0]]);
    let stage = plan.target_stage();
    assert_eq!(stage.base, Base::Image("node:18-alpine".into()));
    assert_eq!(stage.platform, "linux/amd64");
    assert_eq!(stage.line, 3);
    let lines: Vec<usize> = stage.steps.iter().map(|s| s.line).collect();
    assert_eq!(lines, [4, 5, 6, 7, 8]);
    let steps = expand_all(&plan, stage, &[("PATH", "/usr/local/bin:/usr/bin")]);
    let texts: Vec<String> = steps.iter().map(|s| s.instruction.to_string()).collect();
    assert_eq!(
        texts,
        [
            "WORKDIR /app",
            "COPY . .",
            "RUN yarn install --production",
            "CMD [\"node\",\"src/index.js\"]",
            "EXPOSE 3000",
        ]
    );
    let Instruction::Cmd(cmd) = &steps[3].instruction else {
        panic!()
    };
    assert_eq!(
        cmd,
        &CommandLine::Exec(vec!["node".into(), "src/index.js".into()])
    );
    assert!(steps.iter().all(|s| s.args_used.is_empty()));
}

#[test]
fn multi_stage_react_and_nginx() {
    let plan = planned(
        r#"FROM node:18 AS build
WORKDIR /app
COPY package* yarn.lock ./
RUN yarn install
COPY public ./public
COPY src ./src
RUN yarn run build

FROM nginx:alpine
COPY --from=build /app/build /usr/share/nginx/html
"#,
        &options(&[]),
    );
    assert_eq!(plan.target, 1);
    assert_eq!(plan.waves, [vec![0], vec![1]]);
    let last = plan.target_stage();
    assert_eq!(last.base, Base::Image("nginx:alpine".into()));
    assert_eq!(last.depends_on, [0]);
    assert_eq!(last.steps[0].copy_from, Some(Base::Stage(0)));
    assert_eq!(plan.stage(0).unwrap().name.as_deref(), Some("build"));
}

const PARALLEL: &str = r#"ARG GO_VERSION=1.22
FROM golang:${GO_VERSION} AS base
WORKDIR /src

FROM base AS build-a
RUN go build -o /a ./a

FROM base AS build-b
RUN --mount=type=cache,target=/root/.cache/go-build go build -o /b ./b

FROM alpine AS unused
RUN echo never

FROM scratch AS final
COPY --from=build-a /a /a
COPY --from=build-b /b /b
ENTRYPOINT ["/a"]
"#;

#[test]
fn waves_and_pruning() {
    let plan = planned(PARALLEL, &options(&[]));
    assert_eq!(plan.waves, [vec![0], vec![1, 2], vec![4]]);
    let indices: Vec<usize> = plan.stages.iter().map(|s| s.index).collect();
    assert_eq!(indices, [0, 1, 2, 4]);
    assert_eq!(
        plan.stage(0).unwrap().base,
        Base::Image("golang:1.22".into())
    );
    assert_eq!(plan.stage(1).unwrap().base, Base::Stage(0));
    assert_eq!(plan.stage(4).unwrap().base, Base::Scratch);
    assert_eq!(plan.stage(4).unwrap().depends_on, [1, 2]);

    let plan = planned(
        PARALLEL,
        &BuildOptions {
            target: Some("build-a".into()),
            ..options(&[("GO_VERSION", "1.21")])
        },
    );
    assert_eq!(plan.waves, [vec![0], vec![1]]);
    assert_eq!(plan.target, 1);
    assert_eq!(
        plan.stage(0).unwrap().base,
        Base::Image("golang:1.21".into())
    );
    assert!(plan.unused_build_args.is_empty());

    assert_eq!(
        error(
            PARALLEL,
            &BuildOptions {
                target: Some("nope".into()),
                ..options(&[])
            }
        ),
        "Dockerfile: target stage \"nope\" could not be found"
    );
}

#[test]
fn from_references() {
    let plan = planned(
        "FROM nginx AS nginx\nFROM nginx AS second\nFROM busybox\nCOPY --from=0 /a /a\nCOPY --from=SECOND /b /b\nCOPY --from=alpine:3 /c /c\nRUN --mount=type=bind,from=nginx,target=/n true\n",
        &options(&[]),
    );
    // A stage named like its image is still based on the image.
    assert_eq!(plan.stage(0).unwrap().base, Base::Image("nginx".into()));
    assert_eq!(plan.stage(1).unwrap().base, Base::Stage(0));
    let last = plan.target_stage();
    let from: Vec<_> = last.steps.iter().map(|s| s.copy_from.clone()).collect();
    assert_eq!(
        from,
        [
            Some(Base::Stage(0)),
            Some(Base::Stage(1)),
            Some(Base::Image("alpine:3".into())),
            None
        ]
    );
    assert_eq!(last.steps[3].mount_from, [Some(Base::Stage(0))]);
    assert_eq!(last.depends_on, [0, 1]);
    assert_eq!(plan.waves, [vec![0], vec![1], vec![2]]);
}

#[test]
fn from_errors() {
    let o = options(&[]);
    assert_eq!(
        error("FROM a\nCOPY --from=Not_An_Image /x /y\n", &o),
        "Dockerfile:2: COPY --from=Not_An_Image: no stage or image named Not_An_Image"
    );
    assert_eq!(
        error("FROM a\nCOPY --from=3 /x /y\n", &o),
        "Dockerfile:2: COPY --from=3: invalid stage index 3"
    );
    assert_eq!(
        error("FROM a\nFROM b\nCOPY --from=1 /x /y\n", &o),
        "Dockerfile:3: circular dependency detected on stage: 1"
    );
    assert_eq!(
        error("ARG S=a\nFROM a AS x\nFROM b\nCOPY --from=$S /x /y\n", &o),
        "Dockerfile:4: variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"
    );
    // A cycle among stages the target does not need is still refused.
    assert_eq!(
        error(
            "FROM a AS x\nCOPY --from=y /x /y\nFROM b AS y\nCOPY --from=x /x /y\nFROM c\n",
            &o
        ),
        "Dockerfile:1: circular dependency detected on stage: x"
    );
    assert_eq!(
        error("FROM a AS x\nCOPY --from=x /x /y\n", &o),
        "Dockerfile:2: circular dependency detected on stage: x"
    );
    assert_eq!(
        error(
            "FROM a AS x\nCOPY --from=y /x /y\nFROM b AS y\nCOPY --from=x /x /y\n",
            &o
        ),
        "Dockerfile:1: circular dependency detected on stage: x"
    );
    assert_eq!(
        error("ARG IMG\nFROM $IMG\n", &o),
        "Dockerfile:2: base name ($IMG) should not be blank"
    );
    assert!(error("FROM Upper\n", &o).starts_with("Dockerfile:1: base image: invalid reference"));
    assert_eq!(
        error("FROM a AS x\nFROM b AS X\n", &o),
        "Dockerfile:2: duplicate stage name \"x\""
    );
}

#[test]
fn parse_errors_name_file_and_line() {
    let o = options(&[]);
    assert_eq!(
        error("FROM a\n\n# c\nRUN x \\\n  y\n\nFOOBAR z\n", &o),
        "Dockerfile:7: unknown instruction: FOOBAR"
    );
    assert_eq!(
        error("\n\nFROM a b\n", &o),
        "Dockerfile:3: FROM requires either one or three arguments"
    );
    assert_eq!(
        error("RUN x\nFROM a\n", &o),
        "Dockerfile:1: no build stage in current context"
    );
    assert_eq!(
        error("# only a comment\n\n", &o),
        "Dockerfile: file with no instructions"
    );
    assert_eq!(
        error("ARG A=1\n", &o),
        "Dockerfile: no build stage in current context"
    );
    assert_eq!(
        error("FROM a\nCOPY --bogus x y\n", &o),
        "Dockerfile:2: unknown flag: --bogus"
    );
    assert_eq!(
        error("FROM a\nRUN <<EOF\nx\n", &o),
        "Dockerfile:2: unterminated heredoc EOF"
    );
}

#[test]
fn expansion_errors_come_from_the_scope() {
    // WORKDIR's words are expanded against the base image's env, so the error comes when
    // the executor expands the step, still naming the line.
    let plan = planned("FROM a\nWORKDIR ${X\n", &options(&[]));
    let stage = plan.target_stage();
    let mut scope = plan.scope(stage, &[]);
    assert_eq!(
        scope.expand(&stage.steps[0]).unwrap_err().to_string(),
        "Dockerfile:2: syntax error: missing '}'"
    );
}

#[test]
fn arg_scoping() {
    let text = r#"ARG VERSION=1
ARG BASE=alpine:${VERSION}
FROM $BASE
WORKDIR /before-$VERSION
ARG VERSION
RUN echo $VERSION
ARG LOCAL=l-${VERSION}
COPY a-$LOCAL /
ENV VERSION=env
WORKDIR /v$VERSION
"#;
    let plan = planned(text, &options(&[]));
    let stage = plan.target_stage();
    assert_eq!(stage.base, Base::Image("alpine:1".into()));
    let steps = expand_all(&plan, stage, &[]);
    // A global ARG is not seen in a stage until declared there.
    assert_eq!(
        steps[0].instruction,
        Instruction::Workdir("/before-".into())
    );
    assert_eq!(steps[1].instruction.to_string(), "ARG VERSION=1");
    let run = &steps[2];
    assert_eq!(
        run.args_used,
        BTreeMap::from([("VERSION".into(), "1".into())])
    );
    assert_eq!(run.run_env, [("VERSION".to_string(), "1".to_string())]);
    assert_eq!(steps[3].instruction.to_string(), "ARG LOCAL=l-1");
    let Instruction::Copy(Copy { sources, .. }) = &steps[4].instruction else {
        panic!()
    };
    assert_eq!(sources, &[Source::Path("a-l-1".into())]);
    assert_eq!(
        steps[4].args_used,
        BTreeMap::from([("LOCAL".into(), "l-1".into())])
    );
    // ENV wins over ARG.
    assert_eq!(steps[6].instruction, Instruction::Workdir("/venv".into()));
    assert!(steps[6].args_used.is_empty());

    let plan = planned(text, &options(&[("VERSION", "2"), ("FOO", "x")]));
    let stage = plan.target_stage();
    assert_eq!(stage.base, Base::Image("alpine:2".into()));
    let steps = expand_all(&plan, stage, &[]);
    assert_eq!(
        steps[2].args_used,
        BTreeMap::from([("VERSION".into(), "2".into())])
    );
    assert_eq!(plan.unused_build_args, ["FOO"]);
}

#[test]
fn platform_and_proxy_args() {
    let plan = planned(
        "FROM --platform=$BUILDPLATFORM golang AS build\nARG TARGETOS TARGETARCH\nENV GOOS=$TARGETOS GOARCH=$TARGETARCH NOT=$BUILDARCH\nRUN go build\n",
        &BuildOptions {
            platform: Some("linux/arm64".into()),
            ..options(&[("HTTP_PROXY", "http://proxy:3128")])
        },
    );
    let stage = plan.target_stage();
    assert_eq!(stage.platform, "linux/amd64");
    let steps = expand_all(&plan, stage, &[]);
    assert_eq!(
        steps[1].instruction.to_string(),
        "ENV GOOS=linux GOARCH=arm64 NOT=\"\""
    );
    let run = &steps[2];
    // Declared args are in the key; the proxy is in the environment only.
    assert_eq!(
        run.args_used,
        BTreeMap::from([
            ("TARGETARCH".into(), "arm64".into()),
            ("TARGETOS".into(), "linux".into())
        ])
    );
    assert!(run
        .run_env
        .contains(&("HTTP_PROXY".to_string(), "http://proxy:3128".to_string())));
    assert!(plan.unused_build_args.is_empty());
}

#[test]
fn base_env_and_env_order() {
    let plan = planned(
        "FROM node\nENV PATH=/app/bin:$PATH\nENV A=1\nENV A=2 B=$A\nWORKDIR $HOME\n",
        &options(&[]),
    );
    let stage = plan.target_stage();
    let steps = expand_all(&plan, stage, &[("PATH", "/usr/bin"), ("HOME", "/root")]);
    assert_eq!(
        steps[0].instruction.to_string(),
        "ENV PATH=/app/bin:/usr/bin"
    );
    // All words of one ENV are expanded before any of it applies.
    assert_eq!(steps[2].instruction.to_string(), "ENV A=2 B=1");
    assert_eq!(steps[3].instruction, Instruction::Workdir("/root".into()));
}

#[test]
fn escape_directive_windows() {
    let text = "# escape=`\n\nFROM mcr.microsoft.com/windows/servercore\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n    /b\n";
    let dockerfile = parse("Dockerfile", text).unwrap();
    assert_eq!(dockerfile.directives.escape, '`');
    let plan = plan(&dockerfile, &options(&[])).unwrap();
    let steps = expand_all(&plan, plan.target_stage(), &[]);
    let Instruction::Copy(c) = &steps[0].instruction else {
        panic!()
    };
    assert_eq!(c.dest, "c:\\");
    assert_eq!(steps[1].instruction.to_string(), "RUN dir c:\\     /b");
}

#[test]
fn heredocs_in_a_file() {
    let text = r#"# syntax=docker/dockerfile:1
FROM debian
ARG TITLE=hello
RUN <<EOT bash
  set -ex
  apt-get update
EOT
COPY <<EOF /usr/share/nginx/html/index.html
<h1>$TITLE</h1>
EOF
RUN <<EOF
echo done
EOF
"#;
    let plan = planned(text, &options(&[]));
    let stage = plan.target_stage();
    let lines: Vec<usize> = stage.steps.iter().map(|s| s.line).collect();
    assert_eq!(lines, [3, 4, 8, 11]);
    let steps = expand_all(&plan, stage, &[]);
    let Instruction::Run(r) = &steps[1].instruction else {
        panic!()
    };
    assert_eq!(
        r.script().unwrap(),
        "<<EOT bash\n  set -ex\n  apt-get update\nEOT"
    );
    let Instruction::Copy(c) = &steps[2].instruction else {
        panic!()
    };
    let [Source::Heredoc(h)] = &c.sources[..] else {
        panic!()
    };
    assert_eq!(h.content, "<h1>hello</h1>\n");
    assert_eq!(
        steps[2].args_used.get("TITLE").map(String::as_str),
        Some("hello")
    );
    let Instruction::Run(r) = &steps[3].instruction else {
        panic!()
    };
    assert_eq!(r.script().unwrap(), "echo done\n");
}

#[test]
fn continuation_with_comments() {
    let plan = planned(
        "FROM debian\nRUN apt-get update && apt-get install -y \\\n    # the client\n    curl \\\n\n    git\nUSER nobody\n",
        &options(&[]),
    );
    let steps = &plan.target_stage().steps;
    assert_eq!(
        steps[0].text,
        "RUN apt-get update && apt-get install -y     curl     git"
    );
    assert_eq!(steps[1].line, 7);
}

#[test]
fn onbuild_triggers_expand_in_the_child() {
    let plan = planned("FROM base\nARG DIR=/app\n", &options(&[]));
    let stage = plan.target_stage();
    let mut scope = plan.scope(stage, &[]);
    scope.expand(&stage.steps[0]).unwrap();
    let trigger = parse_trigger("COPY . $DIR").unwrap();
    let step = scope.expand_instruction(&trigger, 1).unwrap();
    assert_eq!(step.instruction.to_string(), "COPY . /app");
    assert!(parse_trigger("FROM x").is_err());
}

#[test]
fn cache_keys_follow_the_args_a_step_uses() {
    let text = "FROM busybox\nRUN echo before\nARG V=1\nCOPY a /a\nRUN echo $V\n";
    let keys = |args: &[(&str, &str)]| -> Vec<String> {
        let plan = planned(text, &options(args));
        let mut parent = "sha256:base".to_string();
        expand_all(&plan, plan.target_stage(), &[])
            .iter()
            .map(|s| {
                parent = s.cache_key(&parent, Some("sha256:content"));
                parent.clone()
            })
            .collect()
    };
    let one = keys(&[]);
    assert_eq!(one, keys(&[]));
    let two = keys(&[("V", "2")]);
    // Unchanged up to the first use of V: the ARG line and the COPY that ignores it.
    assert_eq!(one[..3], two[..3]);
    assert_ne!(one[3], two[3]);
}

#[test]
fn later_of_arg_and_env_wins() {
    let plan = planned(
        "FROM a\nENV V=env\nARG V=arg\nWORKDIR /$V\nRUN x\nENV V=again\nWORKDIR /$V\nRUN y\n",
        &options(&[]),
    );
    let steps = expand_all(&plan, plan.target_stage(), &[("V", "image")]);
    assert_eq!(steps[2].instruction, Instruction::Workdir("/arg".into()));
    assert_eq!(
        steps[2].args_used,
        BTreeMap::from([("V".into(), "arg".into())])
    );
    assert_eq!(steps[3].run_env, [("V".to_string(), "arg".to_string())]);
    assert_eq!(steps[5].instruction, Instruction::Workdir("/again".into()));
    assert!(steps[6].run_env.is_empty());
    assert!(steps[6].args_used.is_empty());
}

#[test]
fn a_stage_inherits_its_base_stage_variables() {
    let plan = planned(
        "FROM alpine AS base\nARG V=1\nENV E=e\nFROM base\nWORKDIR /$V/$E\n",
        &options(&[]),
    );
    let base = plan.stage(0).unwrap();
    let mut scope = plan.scope(base, &[("PATH".into(), "/bin".into())]);
    for step in &base.steps {
        scope.expand(step).unwrap();
    }
    let child = plan.stage(1).unwrap();
    assert_eq!(child.base, Base::Stage(0));
    let mut child_scope = scope.clone();
    let step = child_scope.expand(&child.steps[0]).unwrap();
    assert_eq!(step.instruction, Instruction::Workdir("/1/e".into()));
    assert_eq!(
        child_scope.env(),
        [
            ("PATH".to_string(), "/bin".to_string()),
            ("E".to_string(), "e".to_string())
        ]
    );
}

#[test]
fn config_values_are_checked_when_expanded() {
    let plan = planned(
        "FROM a\nARG P=80\nEXPOSE $P/tcp\nEXPOSE web\nSTOPSIGNAL SIGNOPE\n",
        &options(&[]),
    );
    let stage = plan.target_stage();
    let mut scope = plan.scope(stage, &[]);
    let results: Vec<_> = stage.steps.iter().map(|s| scope.expand(s)).collect();
    assert!(results[1].is_ok());
    assert_eq!(
        results[2].as_ref().unwrap_err().to_string(),
        "Dockerfile:4: invalid containerPort: web"
    );
    assert_eq!(
        results[3].as_ref().unwrap_err().to_string(),
        "Dockerfile:5: invalid signal: SIGNOPE"
    );
}

#[test]
fn a_stage_on_a_stage_keeps_its_platform() {
    let plan = planned(
        "FROM --platform=linux/arm64 alpine AS a\nFROM a AS b\nFROM --platform=linux/s390x a\n",
        &options(&[]),
    );
    let platforms: Vec<&str> = plan.stages.iter().map(|s| s.platform.as_str()).collect();
    assert_eq!(platforms, ["linux/arm64", "linux/s390x"]);
    let plan = planned(
        "FROM --platform=linux/arm64 alpine AS a\nFROM a AS b\nFROM --platform=linux/s390x a\nCOPY --from=b / /\n",
        &options(&[]),
    );
    let platforms: Vec<&str> = plan.stages.iter().map(|s| s.platform.as_str()).collect();
    assert_eq!(platforms, ["linux/arm64", "linux/arm64", "linux/s390x"]);
}
