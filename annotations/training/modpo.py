"""MODPO (arXiv:2310.03708) on top of TRL's DPOTrainer.

Loss for primary criterion k, weights w and reward models r_j of the other criteria:
    -log sigmoid( (beta/w_k) * (logratio(y_w) - logratio(y_l)) - (1/w_k) * margin )
    margin = sum_{j != k} w_j * (r_j(x, y_w) - r_j(x, y_l))
The margin is computed once per dataset (see scoring.py) and stored in the MARGIN_COLUMN of each
row. It must survive three places where TRL drops columns: tokenization (`dataset.map` keeps
extra columns), `Trainer._remove_unused_columns` (we add the column to the signature columns)
and the collator (ours adds it to the batch). `compute_loss` reads it without a default, so a
lost column fails loudly instead of silently training plain DPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

MARGIN_COLUMN = "modpo_margin"
_NON_MODEL_KEYS = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps", MARGIN_COLUMN}


def modpo_loss(
    chosen_logratios: torch.Tensor,
    rejected_logratios: torch.Tensor,
    margins: torch.Tensor,
    *,
    beta: float,
    primary_weight: float,
) -> torch.Tensor:
    """Per-pair MODPO loss; with margins of zero and primary_weight 1 it is the DPO sigmoid loss."""
    logits = (beta / primary_weight) * (chosen_logratios - rejected_logratios) - margins / primary_weight
    return -F.logsigmoid(logits)


@dataclass
class DataCollatorForMODPO(DataCollatorForPreference):
    """TRL's preference collator plus the margin of each pair, in batch order."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        if MARGIN_COLUMN not in examples[0]:
            raise KeyError(
                f"MODPO examples lack the {MARGIN_COLUMN!r} column: the margins were dropped before collation"
            )
        output = super().torch_call(examples)
        output[MARGIN_COLUMN] = torch.tensor([example[MARGIN_COLUMN] for example in examples], dtype=torch.float32)
        return output


class MODPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is MODPO's. Sigmoid loss with reverse KL only (the MODPO paper's)."""

    _tag_names = ["trl", "modpo"]

    def __init__(self, *args: Any, primary_weight: float, **kwargs: Any):
        if not primary_weight > 0:
            raise ValueError("primary_weight must be positive: the MODPO loss divides by it")
        self.primary_weight = float(primary_weight)
        training_args = kwargs.get("args")
        if training_args is not None:
            if list(training_args.loss_type) != ["sigmoid"] or training_args.f_divergence_type != "reverse_kl":
                raise ValueError("MODPO supports loss_type=['sigmoid'] with f_divergence_type='reverse_kl' only")
            if training_args.ld_alpha is not None:
                raise ValueError("MODPO does not support ld_alpha")
        super().__init__(*args, **kwargs)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if MARGIN_COLUMN not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, MARGIN_COLUMN]

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        # Also called by the parent's reference precompute with collated batches: keep the margin
        # out of the model's forward arguments.
        return super().compute_ref_log_probs(model, {k: v for k, v in inputs.items() if k != MARGIN_COLUMN})

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        mode = "train" if self.model.training else "eval"
        margins = inputs[MARGIN_COLUMN]  # no default: a missing margin must fail, not become DPO
        model_kwargs = {k: v for k, v in inputs.items() if k not in _NON_MODEL_KEYS}
        model_kwargs["use_cache"] = False
        completion_mask = inputs["completion_mask"]
        seq_len = completion_mask.size(1) - 1
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        # The fused LM head returns log-probs only where labels are set, zero elsewhere.
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)

        if self.precompute_ref_logps:
            ref_chosen_logps, ref_rejected_logps = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        else:
            reference = self.ref_model if self.ref_model is not None else self.model
            ref_chosen_logps, ref_rejected_logps = self.compute_ref_log_probs(reference, inputs)

        chosen_logratios = chosen_logps - ref_chosen_logps
        rejected_logratios = rejected_logps - ref_rejected_logps
        margins = margins.to(chosen_logratios.dtype)
        loss = modpo_loss(
            chosen_logratios, rejected_logratios, margins, beta=self.beta, primary_weight=self.primary_weight
        ).mean()

        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum()).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics = self._metrics[mode]
        metrics["num_tokens"] = [self._total_train_tokens]
        chosen_rewards = self.beta * chosen_logratios.detach()
        rejected_rewards = self.beta * rejected_logratios.detach()
        gather = self.accelerator.gather_for_metrics
        metrics["rewards/chosen"].append(gather(chosen_rewards).mean().item())
        metrics["rewards/rejected"].append(gather(rejected_rewards).mean().item())
        metrics["rewards/accuracies"].append(gather((chosen_rewards > rejected_rewards).float()).mean().item())
        metrics["rewards/margins"].append(gather(chosen_rewards - rejected_rewards).mean().item())
        metrics["modpo/margin_rewards"].append(gather(margins.detach()).mean().item())
        metrics["logps/chosen"].append(gather(chosen_logps.detach()).mean().item())
        metrics["logps/rejected"].append(gather(rejected_logps.detach()).mean().item())

        if return_outputs:
            with torch.no_grad():
                outputs = model(**model_kwargs)
            return loss, outputs
        return loss
