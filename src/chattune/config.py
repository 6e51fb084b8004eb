"""The job config: one typed, documented schema for everything a run needs.

Owns: the pydantic models, loading YAML/JSON, and turning every validation problem into one
readable message (key path: what is allowed). Knows nothing about tokenizers, data or training:
it only says what the user asked for. Every field's description is also its documentation
(`chattune config schema` prints them as JSON Schema).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chattune.errors import UserError

DEFAULT_MODEL = "smollm2-135m-instruct"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    train: Path | None = Field(None, description="Training data: a .jsonl/.json/.parquet file or a `datasets` folder.")
    eval: Path | None = Field(None, description="Held-out data in the same format; also the default source of monitored prompts.")
    max_length: int = Field(2048, gt=0, description="Longest example in tokens; longer ones are cut from the end.")
    train_on: Literal["all_assistant", "last_assistant"] = Field(
        "all_assistant", description="Which assistant messages are trained (a message's own `train` key overrides)."
    )
    masking: Literal["assistant", "none"] = Field(
        "assistant",
        description="`assistant`: train only assistant replies. `none`: train every token, prompts included "
        "(a deliberate experiment; chattune warns loudly).",
    )
    skip_invalid: bool = Field(False, description="Skip malformed examples (and report them) instead of stopping.")
    num_proc: int = Field(1, gt=0, description="Processes used to tokenize.")


class LoraConfig(_Strict):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA branch.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or `all-linear`."
    )


class TrainingConfig(_Strict):
    method: Literal["sft", "dpo", "orpo"] = Field("sft", description="Training objective.")
    use_lora: bool = Field(True, description="Train a LoRA adapter (true) or all weights (false).")
    lora: LoraConfig = Field(default_factory=LoraConfig, description="LoRA settings (used when use_lora is true).")
    pretokenize: bool = Field(
        True,
        description="Tokenize and mask once into the cache before training. The labels are identical either way.",
    )
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    num_epochs: float = Field(1.0, gt=0, description="Passes over the training data (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    batch_size: int = Field(4, gt=0, description="Examples per device per step.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Micro-batches accumulated per optimizer step.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "cosine", description="Learning-rate schedule."
    )
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps spent warming up.")
    beta: float = Field(0.1, gt=0, description="DPO beta / ORPO lambda.")
    seed: int = Field(42, description="Random seed (data order, LoRA init).")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="`auto`: bf16 on GPUs that support it, else fp16 on GPU, fp32 on CPU."
    )
    output_dir: Path = Field(Path("runs/latest"), description="Run folder: adapter/model, config, metrics, checkpoints.")
    logging_steps: int = Field(10, gt=0, description="Log metrics every N steps.")
    save_steps: int = Field(100, gt=0, description="Save a checkpoint every N steps.")
    eval_steps: int | None = Field(None, gt=0, description="Evaluate every N steps (default: save_steps).")
    save_total_limit: int | None = Field(2, gt=0, description="Checkpoints kept (oldest deleted).")
    resume: bool = Field(False, description="Continue from the newest checkpoint in output_dir.")
    group_by_length: bool = Field(False, description="Batch examples of similar length to cut padding.")
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory for long sequences, ~20-30% slower."
    )
    report_to: list[Literal["tensorboard"]] = Field(default_factory=list, description="Extra loggers.")


class MonitorThresholds(_Strict):
    prompt_echo: float = Field(0.5, ge=0, le=1, description="Share of the prediction copied from the prompt.")
    repetition: float = Field(0.5, ge=0, le=1, description="Strongest of: words in repeated 6-grams, repeated sentences, zlib compressibility.")
    script_drift: float = Field(0.1, ge=0, le=1, description="Share of words (a Han character counts as one) in a script absent from prompt and reference.")
    format_leakage: float = Field(0.5, ge=0, le=1, description="Template markers or role headers in the output (0 or 1).")
    length_blowup: float = Field(3.0, gt=0, description="Prediction length over reference (or baseline) length.")


class MonitorConfig(_Strict):
    enabled: bool = Field(True, description="Generate and score predictions while training.")
    every_steps: int = Field(50, gt=0, description="Generate predictions every N steps (and at step 0).")
    prompts: Path | None = Field(None, description="JSONL of prompts to monitor (default: from eval/train data).")
    num_prompts: int = Field(4, gt=0, description="How many prompts to monitor.")
    max_new_tokens: int = Field(64, gt=0, description="Longest prediction in tokens.")
    stop_on_leakage: bool = Field(False, description="Stop training (exit non-zero) when a step is unhealthy.")
    thresholds: MonitorThresholds = Field(default_factory=MonitorThresholds, description="Score thresholds for flags.")


class JobConfig(_Strict):
    model: str = Field(DEFAULT_MODEL, description="Hub id, local folder, or the embedded `smollm2-135m-instruct`.")
    chat_template: Path | None = Field(None, description="A .jinja file that replaces the tokenizer's chat template.")
    cache_dir: Path | None = Field(None, description="Cache root (default: $CHATTUNE_CACHE_DIR or ~/.cache/chattune).")
    data: DataConfig = Field(default_factory=DataConfig, description="Data and masking.")
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Method and optimisation.")
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, description="Prediction monitoring.")

    @model_validator(mode="after")
    def _consistent(self) -> JobConfig:
        if self.training.method != "sft" and self.data.masking == "none":
            raise ValueError("data.masking: `none` applies to sft only (DPO/ORPO always train on responses)")
        return self


def _format(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (see `chattune config schema` for the allowed keys)"
        lines.append(f"{source}: {where}: {msg}")
    return "\n".join(lines)


def parse_config(raw: dict, source: str = "config") -> JobConfig:
    """Validate a config dict; every problem is reported at once as a UserError."""
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(_format(e, source)) from None


def load_config(path: str | Path) -> JobConfig:
    """Read a YAML or JSON job config. Relative data paths are resolved against the current folder."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such config file")
    try:
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise UserError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {str(e).splitlines()[0]}")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level")
    return parse_config(raw, str(path))


def schema() -> dict:
    return JobConfig.model_json_schema()
