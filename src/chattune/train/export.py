"""`chattune export`: a run folder → a model folder other tools load.

Owns reading a finished run (its `config.yaml` names the base model) and writing either the adapter as it is,
the LoRA adapter merged into the base weights (`merge=True`, loads with plain
`AutoModelForCausalLM.from_pretrained`), or a full fine-tune's weights, each with the tokenizer.
Knows nothing about training.
"""

from __future__ import annotations

from pathlib import Path

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from chattune.config import load_config
from chattune.errors import UserError
from chattune.models import load_model


def export(run_dir: Path, output: Path | None = None, merge: bool = False) -> Path:
    """Write the run's model to `output` (default: RUN_DIR/merged or RUN_DIR/export) and return the folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise UserError(f"{run_dir}: not a chattune run folder (no config.yaml)")
    is_adapter = (run_dir / "adapter_config.json").is_file()
    if not is_adapter and not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir}: holds no trained adapter or model (did the run finish?)")
    output = Path(output or run_dir / ("merged" if merge else "export"))
    if is_adapter:
        cfg = load_config(run_dir / "config.yaml")
        model = PeftModel.from_pretrained(load_model(cfg.model, cache_dir=cfg.cache_dir), run_dir)
        if merge:
            model = model.merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(run_dir)  # a full fine-tune: nothing to merge
    model.save_pretrained(output)
    AutoTokenizer.from_pretrained(run_dir).save_pretrained(output)
    print(output)
    return output
