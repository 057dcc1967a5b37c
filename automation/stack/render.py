"""Run the program offline under Pulumi's mock runtime and capture everything it declares.

`python -m automation render --stack dev|prod --out DIR` and the test suite share this code path:
`run_program` loads `Pulumi.<stack>.yaml`, runs `components.program.declare` with mocks that
record every registered resource, and returns them with the stack outputs. `write_render` writes
Kubernetes objects as YAML, Docker/AWS resources as JSON and a summary; secret values never
appear: anything Pulumi marks secret, and every value the mocks generated or config supplied as a
secret (and any string containing one), is replaced by `[secret]`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from automation.errors import UserInputError

PROJECT_DIR = Path(__file__).resolve().parents[2]
SECRET_SIG = "4dabf18193072939515e22adb298388d"
REDACTED = "[secret]"
RENDER_PLACEHOLDER = "render-placeholder-"
ACCOUNT = "123456789012"


@dataclass
class Registered:
    type: str
    name: str
    inputs: dict[str, Any]  # as the engine received them (secrets still wrapped)
    outputs: dict[str, Any]

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:")

    def manifest(self) -> dict[str, Any]:
        """The Kubernetes object, secrets redacted, numbers as JSON would have them."""
        manifest: dict[str, Any] = redact_wrapped(normalize_numbers(self.inputs))
        return manifest


@dataclass
class Rendered:
    stack: str
    resources: list[Registered]
    outputs: dict[str, Any]  # plain values, as automation reads them
    redacted_outputs: dict[str, Any] = field(
        default_factory=dict
    )  # what `pulumi stack output` shows
    secret_values: set[str] = field(default_factory=set)

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str) -> Registered:
        return next(r for r in self.resources if r.name == name)

    def kubernetes_objects(self) -> list[dict[str, Any]]:
        return [r.manifest() for r in self.resources if r.is_kubernetes]

    def k8s(
        self, kind: str, name: str | None = None, namespace: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            o
            for o in self.kubernetes_objects()
            if o["kind"] == kind
            and (name is None or o["metadata"]["name"] == name)
            and (namespace is None or o["metadata"].get("namespace") == namespace)
        ]


# --- mocks --------------------------------------------------------------------------------------


def _token(*parts: str, length: int = 32) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return (digest * 4)[:length]


class RecordingMocks:
    """Pulumi mocks that record registrations and compute plausible provider outputs."""

    def __init__(self) -> None:
        self.resources: list[Registered] = []
        self.secret_values: set[str] = set()

    def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        outputs = self._computed(args.typ, args.name, unwrap(inputs))
        self.resources.append(Registered(args.typ, args.name, inputs, outputs))
        return outputs.get("id", f"{args.name}-id"), outputs

    def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            password = _token("ecr-token")
            self.secret_values.add(password)
            return {"userName": "AWS", "password": password, "authorizationToken": password}, []
        return {}, []

    def _computed(self, typ: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        out = dict(inputs)
        if typ == "random:index/randomPassword:RandomPassword":
            length = int(inputs.get("length", 32))
            out["result"] = _token(name, json.dumps(inputs.get("keepers", {})), length=length)
            self.secret_values.add(out["result"])
        elif typ == "aws:s3/bucket:Bucket":
            out.update(id=inputs["bucket"], arn=f"arn:aws:s3:::{inputs['bucket']}")
        elif typ == "aws:iam/role:Role":
            out["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{inputs.get('name', name)}"
        elif typ == "aws:ecr/repository:Repository":
            out.update(
                repositoryUrl=f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{inputs['name']}",
                registryId=ACCOUNT,
            )
        elif typ == "docker:index/image:Image":
            base = inputs.get("imageName", name).split(":")[0]
            out["repoDigest"] = f"{base}@sha256:{_token(name, length=64)}"
        elif typ == "docker:index/remoteImage:RemoteImage":
            out["imageId"] = f"sha256:{_token(inputs.get('name', name), length=64)}"
        elif typ == "kubernetes:batch/v1:Job":
            out["status"] = {"succeeded": 1}
        return out

    def as_pulumi_mocks(self) -> Any:
        import pulumi

        outer = self

        class _Mocks(pulumi.runtime.Mocks):
            def new_resource(self, args: Any) -> tuple[str, dict[str, Any]]:
                return outer.new_resource(args)

            def call(self, args: Any) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
                return outer.call(args)

        return _Mocks()


# --- secret handling ----------------------------------------------------------------------------


def is_wrapped_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def unwrap(value: Any) -> Any:
    if is_wrapped_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def redact_wrapped(value: Any) -> Any:
    """Replace every value Pulumi marked secret; a Secret's data is always redacted."""
    if is_wrapped_secret(value):
        inner = value["value"]
        if isinstance(inner, dict):
            return {k: REDACTED for k in inner}
        if isinstance(inner, list):
            return [REDACTED for _ in inner]
        return REDACTED
    if isinstance(value, dict):
        out = {k: redact_wrapped(v) for k, v in value.items()}
        if out.get("kind") == "Secret":
            for key in ("stringData", "data"):
                if isinstance(out.get(key), dict):
                    out[key] = {k: REDACTED for k in out[key]}
        return out
    if isinstance(value, list):
        return [redact_wrapped(v) for v in value]
    return value


def redact_known(text: str, secrets: set[str]) -> str:
    """Belt and braces: scrub any known secret value (and strings that embed one) from text."""
    for value in sorted(secrets, key=len, reverse=True):
        if len(value) >= 8:
            text = text.replace(value, REDACTED)
    return text


def normalize_numbers(value: Any) -> Any:
    """The engine hands numbers over as floats; Kubernetes wants integers where they are whole."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalize_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_numbers(v) for v in value]
    return value


# --- config -------------------------------------------------------------------------------------


def load_stack_config(stack: str, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.exists():
        known = sorted(p.stem.split(".", 1)[1] for p in project_dir.glob("Pulumi.*.yaml"))
        raise UserInputError(f"--stack {stack!r}: no {path.name} (stacks: {', '.join(known)})")
    document = read_yaml(path) or {}
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict | None):
        raise UserInputError(f"{path.name}: `config:` must be a mapping of keys to values")
    return dict(config or {})


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last one
    silently; the Pulumi CLI refuses the file)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise UserInputError(
                    f"{Path(self.name).name}: key {key!r} appears twice (lines {seen[key]} and "
                    f"{line}); keep one of them"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _StrictLoader.construct_mapping
)


def read_yaml(path: Path) -> Any:
    """A stack file: broken YAML or a duplicated key is one line naming file, line and fix."""
    try:
        with path.open(encoding="utf-8") as stream:
            return yaml.load(stream, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserInputError(
            f"{path.name}: not valid YAML{where}: {exc.problem or exc.context}; fix the file "
            "(indentation, a missing ':' or an unclosed quote)"
        ) from None
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise UserInputError(f"{path.name}: cannot read it as YAML ({exc}); fix the file") from None


def _replace_secure(value: Any, path: str, secrets: set[str]) -> Any:
    """`secure:` values can't be decrypted offline: stand in a marked value, known as secret."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        stand_in = f"{RENDER_PLACEHOLDER}{path}"
        secrets.add(stand_in)
        return stand_in
    if isinstance(value, dict):
        return {k: _replace_secure(v, f"{path}.{k}", secrets) for k, v in value.items()}
    return value


def with_placeholder_secrets(config: dict[str, Any], secrets: set[str]) -> dict[str, Any]:
    """Fill every outside secret the catalog needs and config lacks, for an offline render."""
    from components.catalog import CATALOG

    config = dict(config)
    apps = config.get("opsplane:apps") or {}
    given = dict(config.get("opsplane:externalSecrets") or {})
    for app in apps:
        values = dict(given.get(app) or {})
        for secret in CATALOG[app].secrets if app in CATALOG else ():
            if secret.kind == "external" and secret.config_key not in values:
                values[secret.config_key] = f"{RENDER_PLACEHOLDER}{app}-{secret.config_key}"
                secrets.add(values[secret.config_key])
        given[app] = values
    config["opsplane:externalSecrets"] = given
    return config


def to_engine_config(config: dict[str, Any]) -> dict[str, str]:
    return {
        key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()
    }


# --- running the program ------------------------------------------------------------------------


def run_program(
    stack: str,
    config: dict[str, Any] | None = None,
    *,
    placeholder_secrets: bool = False,
    project_dir: Path = PROJECT_DIR,
) -> Rendered:
    """Run the program for `stack` under mocks; config defaults to `Pulumi.<stack>.yaml`."""
    import pulumi
    from pulumi.runtime import config as runtime_config
    from pulumi.runtime import settings as runtime_settings

    from components.config import ConfigError, load_from_pulumi
    from components.program import declare

    secrets: set[str] = set()
    raw = load_stack_config(stack, project_dir) if config is None else dict(config)
    raw = {k: _replace_secure(v, k, secrets) for k, v in raw.items()}
    if placeholder_secrets:
        raw = with_placeholder_secrets(raw, secrets)
    for app_values in (raw.get("opsplane:externalSecrets") or {}).values():
        secrets.update(v for v in (app_values or {}).values() if isinstance(v, str))
    runtime_config.set_all_config(to_engine_config(raw), ["opsplane:externalSecrets"])
    mocks = RecordingMocks()
    runtime_settings.ROOT.set(None)  # a fresh root stack per run (tests render many)
    pulumi.runtime.set_mocks(
        mocks.as_pulumi_mocks(), project="opsplane", stack=stack, preview=False
    )
    try:
        settings = load_from_pulumi()
    except ConfigError as exc:
        raise UserInputError(str(exc)) from None
    captured: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]  # pulumi leaves it unannotated
    def _run() -> Any:
        outputs = declare(settings)

        async def capture() -> None:
            captured["plain"] = await resolve_outputs(outputs, None)
            captured["redacted"] = await resolve_outputs(outputs, secrets)

        return pulumi.Output.from_input(asyncio.ensure_future(capture()))

    _run()
    mocks.secret_values |= secrets
    return Rendered(
        stack,
        mocks.resources,
        normalize_numbers(captured["plain"]),
        normalize_numbers(captured["redacted"]),
        mocks.secret_values,
    )


async def resolve_outputs(value: Any, found_secrets: set[str] | None) -> Any:
    """Resolve nested Outputs; with `found_secrets`, secret ones become `[secret]` (and are
    remembered, so the known-value scrub also catches copies of them elsewhere)."""
    import pulumi

    if isinstance(value, pulumi.Output):
        if found_secrets is not None and await value.is_secret():
            plain = await resolve_outputs(await value.future(), None)
            found_secrets.update(_strings(plain))
            return REDACTED
        return await resolve_outputs(await value.future(), found_secrets)
    if isinstance(value, dict):
        return {k: await resolve_outputs(v, found_secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [await resolve_outputs(v, found_secrets) for v in value]
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# --- writing ------------------------------------------------------------------------------------


def _file_name(registered: Registered) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{registered.name}")


def write_render(rendered: Rendered, out: Path) -> dict[str, Any]:
    """Write the render to `out`; returns the summary (also written as summary.json)."""
    secrets = rendered.secret_values
    (out / "kubernetes").mkdir(parents=True, exist_ok=True)
    (out / "resources").mkdir(parents=True, exist_ok=True)
    for r in rendered.resources:
        if r.type.startswith("opsplane:") or r.type.startswith("pulumi:"):
            continue
        if r.is_kubernetes:
            text = yaml.safe_dump(r.manifest(), sort_keys=False)
            (out / "kubernetes" / f"{_file_name(r)}.yaml").write_text(redact_known(text, secrets))
        else:
            body = {"type": r.type, "name": r.name, "inputs": r.manifest()}
            text = json.dumps(body, indent=2, sort_keys=True)
            (out / "resources" / f"{_file_name(r)}.json").write_text(redact_known(text, secrets))
    outputs_text = json.dumps(rendered.redacted_outputs, indent=2, sort_keys=True, default=str)
    (out / "outputs.json").write_text(redact_known(outputs_text, secrets))
    counts = Counter(r.type for r in rendered.resources)
    summary = {
        "stack": rendered.stack,
        "resources": sum(counts.values()),
        "by_type": dict(sorted(counts.items())),
        "kubernetes_objects": sum(1 for r in rendered.resources if r.is_kubernetes),
        "placeholder_secrets": sorted(
            s.removeprefix(RENDER_PLACEHOLDER) for s in secrets if s.startswith(RENDER_PLACEHOLDER)
        ),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
