"""The types of the stage registry: what a stage declares (parameters, artifacts, resources,
retries, secrets) and where its Argo container reads and writes artifacts.

`tlt.orchestration.registry` assembles the stage catalogue from these; KFP components
(`tlt.orchestration.components`, `tlt.orchestration.task_settings`) and Argo templates
(`tlt.orchestration.argo`) read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from tlt.errors import PipelineError

__all__ = [
    "ARTIFACT_KINDS",
    "Adapter",
    "CHECKPOINT_PARAMS",
    "GPU_NODE_SELECTOR_PARAM",
    "GPU_RESOURCE",
    "GPU_TOLERATION",
    "MODEL_KEY_SECRET",
    "QUICK_RETRY",
    "SHM_MOUNT_PATH",
    "SHM_VOLUME",
    "REQUIRED",
    "STORAGE_SECRET",
    "Artifact",
    "Param",
    "Resources",
    "RetryPolicy",
    "SecretEnv",
    "Stage",
    "input_path",
    "output_path",
    "result_path",
]

#: KFP v2 artifact classes a stage may consume or produce (names of `kfp.dsl` classes).
ARTIFACT_KINDS = ("Artifact", "Dataset", "Model", "Metrics", "ClassificationMetrics", "Markdown", "HTML")


#: A stage adapter: ``adapter(params, inputs, outputs) -> {output name: metadata}`` (see
#: `tlt.orchestration.adapters`). ``inputs`` maps an input to its folder, or to the list of folders
#: of a collected input (`Artifact.collected`); a stage with ``results`` also returns
#: ``{tlt.orchestration.results.RESULTS_KEY: {name: value}}`` (checked and typed by
#: `tlt.orchestration.results.split_results`).
Adapter = Callable[[Mapping[str, Any], Mapping[str, str], Mapping[str, str]], dict[str, dict[str, Any]]]


class _Required:
    """Marker for a parameter without a default (the caller must pass it)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

_PARAM_TYPES = (str, int, float, bool)
_SECRET_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Param:
    """A scalar parameter of a stage (a KFP parameter, an Argo input parameter).

    Attributes:
        name: identifier, snake_case; the KFP argument name and the runner's ``--name`` flag.
        type: one of str, int, float, bool.
        help: one sentence shown in the component README and the Kubeflow UI.
        default: the value when the caller passes none, or `REQUIRED`.
    """

    name: str
    type: type
    help: str
    default: Any = REQUIRED

    def __post_init__(self) -> None:
        if self.type not in _PARAM_TYPES:
            raise PipelineError(f"parameter {self.name}: type must be one of str, int, float, bool, "
                                f"got {self.type!r}")
        if self.default is not REQUIRED and type(self.default) is not self.type:
            raise PipelineError(f"parameter {self.name}: default {self.default!r} is not a "
                                f"{self.type.__name__}")

    @property
    def required(self) -> bool:
        """True when the parameter has no default."""
        return self.default is REQUIRED


@dataclass(frozen=True)
class Artifact:
    """A typed artifact a stage reads or writes: a folder with ``metadata.json``.

    Attributes:
        name: identifier, snake_case (``dataset``, ``model`` ...).
        kind: the KFP artifact class, one of `ARTIFACT_KINDS`.
        help: one sentence for the README and the UI.
        optional: an input a task may leave unconnected (e.g. the TFRecords only detection reads).
        collected: an input receiving one artifact per iteration of a ``dsl.ParallelFor``
            (``dsl.Collected``): ``Input[List[<kind>]]`` in KFP, the list of their folders for the
            adapter (an Argo container gets one folder holding them, see
            `tlt.orchestration.entrypoints.run_stage_argv`).
    """

    name: str
    kind: str
    help: str
    optional: bool = False
    collected: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ARTIFACT_KINDS:
            raise PipelineError(f"artifact {self.name}: kind must be one of {', '.join(ARTIFACT_KINDS)}, "
                                f"got {self.kind!r}")


#: The extended resource a GPU stage asks for (the NVIDIA device plugin's name).
GPU_RESOURCE = "nvidia.com/gpu"
#: The toleration of a GPU stage: GPU node pools are tainted so that only pods asking for a GPU
#: land there (GKE and the NVIDIA GPU operator taint ``nvidia.com/gpu`` that way).
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
#: The pipeline (KFP) and workflow (Argo) parameter holding the GPU stages' node selector as a JSON
#: object, e.g. ``{"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}``; ``{}`` selects none.
GPU_NODE_SELECTOR_PARAM = "gpu_node_selector"
#: Name and mount path of the memory-backed emptyDir of stages that load data: the container
#: runtime's default /dev/shm is 64 MiB, too small for the shared memory of data-loader workers.
SHM_VOLUME = "dshm"
SHM_MOUNT_PATH = "/dev/shm"


@dataclass(frozen=True)
class Resources:
    """Kubernetes resources of a stage's container (quantities as Kubernetes writes them).

    Attributes:
        cpu_request, cpu_limit, memory_request, memory_limit: the container's requests and limits.
        gpus: `GPU_RESOURCE` devices the stage asks for on a GPU cluster (KFP pipelines; the
            Argo ``gpu`` overlay); 0 for a CPU stage.
        shm_size: size limit of a memory-backed emptyDir at `SHM_MOUNT_PATH` for stages that load
            data ("" for none); it counts against ``memory_limit``.
    """

    cpu_request: str = "1"
    cpu_limit: str = "2"
    memory_request: str = "2Gi"
    memory_limit: str = "4Gi"
    gpus: int = 0
    shm_size: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """How often a failed stage is retried; stages resume from their last checkpoint.

    Attributes:
        num_retries: retries after the first failure.
        backoff_seconds: wait before the first retry.
        backoff_factor: multiplier of the wait for each further retry (an integer, as Argo needs).
        backoff_max_seconds: upper bound of the wait.
    """

    num_retries: int = 2
    backoff_seconds: int = 30
    backoff_factor: int = 2
    backoff_max_seconds: int = 600


@dataclass(frozen=True)
class SecretEnv:
    """Environment variables filled from a Kubernetes secret (never from pipeline parameters).

    Attributes:
        secret: the secret's name.
        keys: secret data key -> environment variable, in a stable order.
        optional: when True the stage still starts where the secret does not exist (local data).
    """

    secret: str
    keys: tuple[tuple[str, str], ...]
    optional: bool = True

    def __post_init__(self) -> None:
        # Caught when the registry is imported (compile time), not when a pod fails to start.
        if not _SECRET_NAME.fullmatch(self.secret or "") or len(self.secret) > 253:
            raise PipelineError(f"secret name {self.secret!r}: expected a Kubernetes object name "
                                f"(lower-case letters, digits, '-' and '.', e.g. tlt-model-key)")
        if not self.keys or any(not key or not _ENV_NAME.fullmatch(env) for key, env in self.keys):
            raise PipelineError(f"secret {self.secret}: keys must map secret keys to environment "
                                f"variable names, got {self.keys!r}")


#: S3/MinIO credentials for s3:// URIs, read by boto3 in `tlt.io` (GCS uses workload identity).
STORAGE_SECRET = SecretEnv(
    secret="tlt-storage-credentials",
    keys=(("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
          ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"),
          ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL")),
)

#: The key that encrypts and decrypts .tlt model files (TLT's ``-k``, read by
#: `tlt.io.modelfile.resolve_key` from TLT_KEY). Required: a pipeline on a cluster always encrypts its
#: models, so a pod without the secret must not start and write a plain model.
MODEL_KEY_SECRET = SecretEnv(secret="tlt-model-key", keys=(("key", "TLT_KEY"),), optional=False)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage.

    Attributes:
        name: registry key = module in `tlt.stages` = folder in ``components/`` = DAG task name.
        cli: the TLT command that runs the same stage on a laptop (e.g. ``tlt-dataset-convert``).
        description: one line for the component, its README and the Argo template.
        params: scalar parameters, in the order the component lists them.
        inputs: artifacts the stage reads (produced by an upstream task).
        outputs: artifacts the stage writes.
        results: scalar outputs (KFP output parameters, Argo output parameters) that control flow
            such as a gate's ``dsl.If`` reads; their ``default`` is unused.
        resources: container requests and limits, GPU count.
        retry: the retry policy of its task.
        secrets: secrets exposed to the container as environment variables (storage credentials).
        model_key: the stage reads or writes .tlt model files, so its container also gets TLT_KEY
            from `MODEL_KEY_SECRET` (see `env_secrets`).
        caching: KFP may reuse the outputs of an earlier run with the same inputs (convert: yes;
            training: no, a rerun must train, resuming from its checkpoints).
    """

    name: str
    cli: str
    description: str
    params: tuple[Param, ...] = ()
    inputs: tuple[Artifact, ...] = ()
    outputs: tuple[Artifact, ...] = ()
    resources: Resources = field(default_factory=Resources)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    secrets: tuple[SecretEnv, ...] = (STORAGE_SECRET,)
    model_key: bool = False
    results: tuple[Param, ...] = ()
    caching: bool = True

    def __post_init__(self) -> None:
        names = [p.name for p in self.params + self.results] + [a.name for a in self.inputs + self.outputs]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise PipelineError(f"stage {self.name}: names used twice: {', '.join(dupes)}")

    def env_secrets(self) -> tuple[SecretEnv, ...]:
        """Every secret the stage's container reads as environment variables, model key last.

        KFP components (`tlt.orchestration.components.configure_task`) and Argo templates
        (`tlt.orchestration.argo.build_workflow_template`) both apply exactly these.
        """
        return self.secrets + ((MODEL_KEY_SECRET,) if self.model_key else ())

    def argv(self) -> list[str]:
        """The container command of its Argo template, with Argo template expressions for the inputs.

        The container runs ``tlt-pipeline stage <name>``, the same adapter the KFP component calls,
        so a stage behaves identically in Kubeflow, Argo and a local run.
        """
        args = ["tlt-pipeline", "stage", self.name]
        args += [f"--{p.name}={{{{inputs.parameters.{p.name}}}}}" for p in self.params]
        args += [f"--input-{a.name}={input_path(a.name)}" for a in self.inputs]
        args += [f"--output-{a.name}={output_path(a.name)}" for a in self.outputs]
        args += [f"--result-{r.name}={result_path(r.name)}" for r in self.results]
        return args


#: Retries of the small stages that read metadata and talk to object storage (gates, registry
#: reads and writes): a store hiccup passes within seconds, so retry soon and give up in minutes.
QUICK_RETRY = RetryPolicy(num_retries=2, backoff_seconds=10, backoff_factor=2, backoff_max_seconds=120)

#: Parameters of a stage that resumes from its checkpoints when its pod is retried: the adapter
#: mirrors its results folder to ``<checkpoint_root>/<run_id>/<stage>-<digest of its inputs>``
#: (`tlt.io.checkpoint_sync`), so a new pod downloads the last checkpoint before it trains.
CHECKPOINT_PARAMS = (
    Param("checkpoint_root", str, "URI of a folder (s3://, gs:// or local) that mirrors the results "
          "folder while training, so a retried pod resumes from its last checkpoint; empty: no "
          "mirror (a retried pod starts over).", ""),
    Param("run_id", str, "Id of the pipeline run (KFP: dsl.PIPELINE_JOB_ID_PLACEHOLDER; Argo: the "
          "workflow's uid); names the run's folder under checkpoint_root.", ""),
)


def input_path(name: str) -> str:
    """Where an Argo template places input artifact ``name`` in its container."""
    return f"/tmp/tlt/inputs/{name}"


def output_path(name: str) -> str:
    """Where an Argo template's container writes output artifact ``name``."""
    return f"/tmp/tlt/outputs/{name}"


def result_path(name: str) -> str:
    """The file an Argo template's container writes scalar result ``name`` to (its output
    parameter's ``valueFrom.path``): the value as text, booleans ``true``/``false``."""
    return f"/tmp/tlt/results/{name}"
