"""Our AdaLoRA (adalora.build + train.train's before-zero-grad hook) against peft's documented usage: get_peft_model
with an AdaLoraConfig, a plain loop that calls `model.base_model.update_and_allocate(step)` after optimizer.step()
and before zero_grad() (the docstring of AdaLoraModel.update_and_allocate). Same model, data, seed and settings:
the loss (orthogonal regulariser included) and every module's rank must agree step by step."""
import torch
from peft import AdaLoraConfig, get_peft_model
from transformers import get_linear_schedule_with_warmup

from lora_nb_utils import RunConfig
from lora_nb_utils.methods import adalora
from lora_nb_utils.glue.data import make_loader
from lora_nb_utils.methods.lora import find_target_modules
from lora_nb_utils.train import TrainConfig, train

from tests.conftest import real_rte_rows, tiny_model

CPU = torch.device("cpu")
STEPS, LR = 12, 1e-2
SETTINGS = dict(adalora_init_r=4, adalora_target_r=2, adalora_tinit=2, adalora_tfinal=4, adalora_delta_t=1,
                lora_alpha=8.0, lora_targets="query,value")


def _base():
    torch.manual_seed(0)
    return tiny_model("roberta-base", "rte", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _ranks(model) -> list[int]:
    return [int((p != 0).sum()) for n, p in sorted(model.named_parameters()) if "lora_E" in n]


def test_our_adalora_loop_matches_peft_documented_usage_step_by_step(glue_dir, roberta_tokenizer_dir):
    task, tok, tokenizer = real_rte_rows(glue_dir, roberta_tokenizer_dir, 4 * STEPS, 8)

    def loader():
        return make_loader(tok["train"], tokenizer, 4, shuffle=True, seed=3)

    # ours: the run's code path
    ours_losses, ours_ranks = [], []
    base = _base()
    torch.manual_seed(1)
    ours = adalora.build(base, RunConfig(method="adalora", **SETTINGS))
    adalora.set_total_steps(ours, STEPS)
    ours.register_forward_hook(lambda m, i, out: ours_losses.append(out.loss.item()) if m.training else None)
    hook = adalora.update_hook(ours)

    def allocate_and_record(step):
        hook(step)
        ours_ranks.append(_ranks(ours))
    train(ours, loader(), {"validation": make_loader(tok["validation"], tokenizer, 8, False)}, task,
          TrainConfig(epochs=1, learning_rate=LR, warmup_ratio=0.0, max_grad_norm=0.0, progress="none"), CPU,
          before_zero_grad=allocate_and_record)

    # peft's documented usage
    peft_losses, peft_ranks = [], []
    base = _base()
    config = AdaLoraConfig(init_r=4, target_r=2, tinit=2, tfinal=4, deltaT=1, lora_alpha=8, lora_dropout=0.0,
                           orth_reg_weight=RunConfig().adalora_orth_reg_weight,
                           target_modules=find_target_modules(base, "query,value"), total_step=STEPS,
                           task_type="SEQ_CLS")
    torch.manual_seed(1)
    model = get_peft_model(base, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, STEPS)
    model.train()
    for step, batch in enumerate(loader(), start=1):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
        peft_losses.append(loss.item())
        peft_ranks.append(_ranks(model))

    assert len(ours_losses) == len(peft_losses) == STEPS
    assert torch.allclose(torch.tensor(ours_losses), torch.tensor(peft_losses), rtol=1e-4, atol=1e-6)
    assert ours_losses[-1] != ours_losses[0]  # it trained
    assert ours_ranks == peft_ranks
    assert ours_ranks[0] == [4] * 4 and sum(ours_ranks[-1]) == 2 * 4  # init_r 4 -> average target_r 2 (4 modules)
