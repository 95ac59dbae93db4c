"""Issue #24: token workloads, models that return (logits, loss) / a dict / a ModelOutput and
compute their own loss, parameter groups, the train step people write, the sequence-length axis,
tokens/s, MFU and the 6·N·T estimate, token files for the data phases, Hugging Face by name."""

from __future__ import annotations

import inspect
import json
import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import models
import tests.user_gpt as tiny
from bench.matrix import select as matrix
from bench.passes.flops import count_flops, decoder_flops, matmul_params
from dataclasses import replace

from bench.schema.case import Case
from bench.schema.status import NoLoss, Status
from bench.workloads import pipeline, tokens
from bench.workloads.build import build_step
from bench.workloads.datasets import DataError
from tests.helpers import run_bench


def case(phase: str = "train_step", model: str = "user_gpt", optimizer: str | None = "adamw", **kw) -> Case:
    return Case(phase=phase, model=model, optimizer=None if phase in ("forward", "backward") else optimizer,
                device="cpu", mode=kw.pop("mode", "eager"), batch_size=kw.pop("batch_size", 4), **kw)


def rows(run) -> dict[str, dict]:
    lines = (run.run_dir / "cases.jsonl").read_text().splitlines()
    return {r["extra_info"]["case_id"]: r["extra_info"] for r in map(json.loads, lines)}


# --- what a model takes and returns --------------------------------------------------------------


def test_a_user_gpt_registers_through_the_public_api_with_token_inputs_and_its_own_loss():
    spec = models.get_spec("user_gpt")
    assert spec.tokens and spec.own_loss and spec.inputs.vocab_size == tiny.VOCAB
    assert spec.input_shape == (tiny.BLOCK,) and spec.batch_size == 4 and spec.make_criterion() is None
    batch = spec.make_batch(3, seq_len=8)
    (ids,) = batch.args
    assert ids.dtype == torch.int64 and ids.shape == (3, 8) and 0 <= int(ids.min()) and int(ids.max()) < tiny.VOCAB
    assert torch.equal(batch.target[:, :-1], ids[:, 1:])  # the targets are the next tokens


def test_every_phase_of_a_token_model_runs_without_wrappers():
    for phase in ("forward", "backward", "optimizer_step", "train_step"):
        step = build_step(case(phase))
        step.run()
        assert step.is_finite(), phase
        assert step.tokens_per_call == 4 * tiny.BLOCK and step.items_per_call == 4


def test_forward_calls_the_model_without_its_targets_so_it_times_no_loss():
    step = build_step(case("forward"))
    logits, loss = step.run()
    assert loss is None and logits.shape == (4, 1, tiny.VOCAB)  # nanoGPT's inference path


def test_outputs_are_read_as_tensor_tuple_dict_or_model_output():
    logits, loss = torch.randn(2, 3), torch.tensor(1.5)
    assert models.loss_of((logits, loss)) is loss and models.prediction((logits, loss)) is logits
    assert models.loss_of({"logits": logits, "loss": loss}) is loss
    assert models.prediction({"loss": loss, "logits": logits}) is logits
    assert models.loss_of(loss) is loss and models.loss_of(logits) is None
    assert models.loss_of((logits, loss, torch.tensor(2.0))) is None  # two 0-dim tensors: ambiguous
    ints = torch.zeros(2, dtype=torch.long)
    assert models.floating_tensors((logits, (ints, {"x": loss}), None)) == [logits, loss]


def test_hugging_face_model_output_is_read_by_its_loss_entry():
    transformers = pytest.importorskip("transformers")
    out = transformers.modeling_outputs.CausalLMOutput(loss=torch.tensor(2.0), logits=torch.randn(1, 2, 5))
    assert models.loss_of(out) is out.loss and models.prediction(out) is out.logits


def test_a_model_that_returns_no_loss_under_own_loss_ends_no_loss(tmp_path, monkeypatch):
    class Activations(torch.nn.Embedding):
        def forward(self, ids, targets=None):  # takes its targets, returns no loss
            return super().forward(ids)

    @models.register_model(inputs=models.tokens(vocab_size=8, seq_len=4), loss="own", name="no_loss_lm")
    def no_loss_lm() -> torch.nn.Module:
        return Activations(8, 4)

    try:
        step = build_step(case(model="no_loss_lm"))
        with pytest.raises(NoLoss, match="loss='own'.*no 'loss' entry") as info:
            step.run()
        assert info.value.status is Status.NO_LOSS and Status.NO_LOSS.failed
    finally:
        models.unregister_model("no_loss_lm")


def test_a_criterion_over_per_token_logits_compares_one_row_per_token():
    @models.register_model(inputs=models.tokens(vocab_size=8, seq_len=4), loss="cross_entropy", name="logits_lm")
    def logits_lm() -> torch.nn.Module:
        return torch.nn.Sequential(torch.nn.Embedding(8, 6), torch.nn.Linear(6, 8))

    try:
        step = build_step(case(model="logits_lm"))
        step.run()
        assert step.is_finite()
    finally:
        models.unregister_model("logits_lm")


# --- parameter groups and the train step people write --------------------------------------------


@pytest.mark.parametrize("optimizer", ["adamw", "adam_fused", "sgd"])
def test_the_optimizer_axis_builds_over_the_registrations_parameter_groups(optimizer):
    step = build_step(case(optimizer=optimizer))
    decay, no_decay = step.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert sum(p.numel() for g in step.optimizer.param_groups for p in g["params"]) == step.param_count


def test_without_param_groups_all_parameters_are_one_group():
    step = build_step(Case("train_step", "fashion_mlp", "adam", "cpu", "eager"))
    assert len(step.optimizer.param_groups) == 1


def test_train_step_options_are_in_the_case_id_only_when_not_plain():
    plain = case()
    assert plain.id == "train_step[user_gpt-adamw-cpu-eager-b4]"
    written = case(clip_grad=1.0, grad_accum=4, lr_schedule="cosine", seq_len=8)
    assert written.id == "train_step[user_gpt-adamw-cpu-eager-b4-seq8-clip1-acc4-lr_cosine]"
    assert len({case(clip_grad=c).id for c in (None, 0.5, 1.0)}) == 3


def test_accumulation_runs_one_forward_per_micro_batch_and_counts_their_tokens():
    step = build_step(case(grad_accum=3))
    calls = []
    handle = step.model.register_forward_hook(lambda *_: calls.append(1))
    step.run()
    handle.remove()
    assert len(calls) == 3 and step.tokens_per_call == 3 * 4 * tiny.BLOCK and step.items_per_call == 12
    inputs = [b.args[0] for b in step.workload.micro_batches]
    assert not torch.equal(inputs[0], inputs[1])  # distinct micro-batches


def test_clipping_bounds_the_gradient_norm_and_the_scheduler_moves_the_rate():
    step = build_step(case(clip_grad=0.01, lr_schedule="linear"))
    lr = [g["lr"] for g in step.optimizer.param_groups]
    step.run()
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in step.model.parameters()]))
    assert norm <= 0.01 * 1.001
    assert [g["lr"] for g in step.optimizer.param_groups] != lr


def test_train_step_options_are_parsed_and_vary_train_step_only():
    assert matrix.parse_axis("clip_grad", "off,1.0") == (None, 1.0)
    assert matrix.parse_axis("grad_accum", "1,4") == (1, 4)
    for axis, bad in (("clip_grad", "-1"), ("grad_accum", "0"), ("lr_schedule", "cosinus"), ("seq_lens", "0")):
        with pytest.raises(matrix.SelectionError, match="--" + axis.replace("_", "-")):
            matrix.parse_axis(axis, bad)
    cases = matrix.select("smoke", models=("user_gpt",), grad_accum=(1, 2), phases=("forward", "train_step"))
    assert {c.grad_accum for c in cases if c.phase == "forward"} == {1}
    assert {c.grad_accum for c in cases if c.phase == "train_step"} == {1, 2}


# --- sequence length, FLOPs, tokens/s ------------------------------------------------------------


def test_the_sequence_length_axis_sets_the_batch_length_and_the_id():
    step = build_step(case(seq_len=8))
    assert step.batch.args[0].shape == (4, 8) and step.tokens_per_call == 32 and "seq8" in step.case.id
    assert matrix.parse_axis("seq_lens", "8,16") == (8, 16)


def test_the_flop_count_of_a_tiny_decoder_is_6nt_within_the_attention_term():
    step = build_step(case(batch_size=2))
    counted = count_flops(step)
    n, t, tokens_per_call = matmul_params(step.model), tiny.BLOCK, 2 * tiny.BLOCK
    six_nt = 6 * n * tokens_per_call
    attention = 12 * tiny.LAYERS * tiny.HEADS * (tiny.WIDTH // tiny.HEADS) * t * tokens_per_call
    # Position embeddings are looked up, not multiplied: N leaves them out; the tied output
    # layer counts once. Counted = 6·N·T plus attention (SDPA's backward counts 2.5x its
    # forward, the formula 2x), less the biases and LayerNorm parameters the counter skips.
    assert n == sum(p.numel() for p in step.model.parameters()) - tiny.BLOCK * tiny.WIDTH
    assert abs(counted - six_nt) <= 1.25 * attention
    assert decoder_flops(step) == pytest.approx(six_nt + attention)


# --- bad input: named errors before anything is measured ---------------------------------------


def test_token_inputs_refuse_bad_shapes():
    for kwargs, message in ((dict(vocab_size=1, seq_len=8), "vocab_size 1"), (dict(vocab_size=8, seq_len=0), "seq_len 0"),
                            (dict(vocab_size=8, seq_len=8, target="class"), "num_classes"),
                            (dict(vocab_size=8, seq_len=8, max_seq_len=4), "above max_seq_len")):
        with pytest.raises(ValueError, match=message):
            models.tokens(**kwargs)


def test_workload_refusals_name_the_value(monkeypatch):
    from bench import plugin

    def refused(selected: list[Case]) -> str:
        with pytest.raises(pytest.exit.Exception) as info:
            plugin._check_workloads(selected)
        assert info.value.returncode == 2
        return str(info.value)

    assert "invalid --seq-lens value 17" in refused([case(seq_len=17)]) and "at most 16 tokens" in refused(
        [case(seq_len=17)])
    assert "takes images" in refused([Case("forward", "lenet", None, "cpu", "eager", seq_len=8)])
    assert "channels_last" in refused([case(memory_format="channels_last")])
    assert "does not take images" in models.get_spec("user_gpt").size_problem(32)

    @models.register_model(inputs=models.tokens(vocab_size=8, seq_len=4), loss="own", name="int_lm")
    def int_lm() -> torch.nn.Module:
        class Argmax(torch.nn.Module):
            def forward(self, ids, targets=None):
                return ids.argmax(dim=-1)
        return Argmax()

    try:
        assert "no floating-point tensor" in refused([case(model="int_lm")])
    finally:
        models.unregister_model("int_lm")


def test_a_model_module_whose_registration_is_refused_names_it(tmp_path, monkeypatch):
    (tmp_path / "bad_vocab.py").write_text(textwrap.dedent('''
        from torch import nn
        from models import register_model, tokens

        @register_model(inputs=tokens(vocab_size=1, seq_len=8), loss="own")
        def one_token() -> nn.Module:
            return nn.Identity()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="--model-module bad_vocab: invalid vocab_size 1"):
        models.import_model_module("bad_vocab")


# --- token files for the data phases -------------------------------------------------------------


def test_a_token_file_is_checked_before_measuring(tmp_path):
    path = tmp_path / "train.bin"
    with pytest.raises(DataError, match="no such token file"):
        tokens.check_token_file(path, 32, 8)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty token file"):
        tokens.check_token_file(path, 32, 8)
    path.write_bytes(b"\x01\x00\x02")
    with pytest.raises(DataError, match="odd length"):
        tokens.check_token_file(path, 32, 8)
    path.write_bytes(bytes(2 * 5))
    with pytest.raises(DataError, match="fewer than one window"):
        tokens.check_token_file(path, 32, 8)
    import numpy as np

    np.array([1, 2, 40] * 10, dtype=np.uint16).tofile(path)
    with pytest.raises(DataError, match="token id 40 is outside the model's vocabulary of 32"):
        tokens.check_token_file(path, 32, 8)
    np.array(range(30), dtype=np.uint16).tofile(path)
    assert tokens.check_token_file(path, 32, 8) == 30


def test_a_token_file_epoch_lowers_the_loss(tmp_path, monkeypatch):
    monkeypatch.setenv("BLITZBENCH_DATA_CACHE", str(tmp_path))
    pipeline.configure(pipeline.DataConfig(size=96, epochs=3), images=False)
    try:
        step = build_step(Case("epoch", "user_gpt", "adamw", "cpu", "eager", batch_size=8))
        for _ in range(1 + step.rounds):
            step.run()
        losses = [r.mean_loss for r in step.state["records"]]
        assert "synthetic tokens" in step.state["source"] and step.tokens_per_call == 96 * tiny.BLOCK
        assert losses[-1] < 0.8 * losses[0], losses
    finally:
        pipeline.configure(pipeline.DataConfig(), images=False)


def test_data_root_reads_a_nanogpt_train_bin(tmp_path):
    import numpy as np

    np.arange(200, dtype=np.uint16).__mod__(tiny.VOCAB).astype(np.uint16).tofile(tmp_path / "train.bin")
    pipeline.configure(pipeline.DataConfig(root=tmp_path, size=10), images=False)
    try:
        windows, source = pipeline.token_set(tiny.VOCAB, 8)
        (first,) = windows[0]
        assert len(windows) == 10 and first.shape == (9,) and str(tmp_path / "train.bin") in source
        assert torch.equal(first[1:], (first[:-1] + 1) % tiny.VOCAB)  # consecutive tokens of the file
    finally:
        pipeline.configure(pipeline.DataConfig(), images=False)


# --- Hugging Face by name ------------------------------------------------------------------------


def test_hf_models_are_built_from_a_config_by_name():
    pytest.importorskip("transformers")
    spec = models.get_spec("hf:gpt2")
    assert spec.tokens and spec.own_loss and spec.inputs.keywords and spec.decoder.layers == 2
    step = build_step(Case("train_step", "hf:gpt2", "adamw", "cpu", "eager", batch_size=2, seq_len=16))
    step.run()
    assert step.is_finite() and step.tokens_per_call == 32
    cls = build_step(Case("train_step", "hf-cls:bert", "adamw", "cpu", "eager", batch_size=2, seq_len=16))
    cls.run()
    assert cls.is_finite() and cls.batch.target.shape == (2,)


def test_hf_names_that_cannot_be_made_are_refused_with_the_reason(monkeypatch):
    pytest.importorskip("transformers")
    with pytest.raises(matrix.SelectionError, match="unknown Hugging Face model type 'gtp2'.*closest: hf:gpt2"):
        matrix.parse_axis("models", "hf:gtp2")
    monkeypatch.setattr(models.hf, "_transformers", lambda: None)
    with pytest.raises(ValueError, match=r"pip install 'blitzbench\[hf\]'"):
        models.hf.resolve("hf:llama")


def test_hf_config_overrides_parse(monkeypatch):
    assert models.hf.parse_overrides("num_hidden_layers=4, hidden_size=64,use_cache=false") == dict(
        num_hidden_layers=4, hidden_size=64, use_cache=False)
    with pytest.raises(ValueError, match="invalid --hf-config item 'layers'"):
        models.hf.parse_overrides("layers")


def test_python_m_models_lists_token_workloads(capsys):
    from models.__main__ import main

    main(["gpt_cpu"])
    out = capsys.readouterr().out
    assert "tokens: vocab 65, seq 64" in out and "809,856" in out and "hf:<model_type>" in out


def test_the_llm_preset_holds_the_built_in_transformers():
    cases = matrix.select("llm")
    cpu = {c.id for c in cases if c.device == "cpu"}
    assert "train_step[gpt_cpu-adamw-cpu-compile-b12]" in cpu and "forward[bert_cls-cpu-eager-b8]" in cpu
    assert any(c.model == "gpt2_124m" and c.device == "cuda" and c.amp == "bfloat16" for c in cases)


# --- real runs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory):
    """One real run of the user's GPT: eager and compiled train_step, and the planted model's
    compiled forward through a backend that perturbs nothing but dynamo's graph (cheap)."""
    return run_bench(tmp_path_factory.mktemp("gpt"), "--model-module", "tests.user_gpt", "--models", "user_gpt",
                     "--phases", "train_step", "--optimizers", "adamw", "--modes", "eager,compile")


@pytest.mark.slow
def test_tokens_per_second_is_batch_times_length_over_the_step_time(gpt_run):
    assert gpt_run.proc.returncode == 0, gpt_run.proc.stdout + gpt_run.proc.stderr
    got = rows(gpt_run)
    for mode in ("eager", "compile"):
        row = got[f"train_step[user_gpt-adamw-cpu-{mode}-b4]"]
        assert row["status"] == "ok", row
        assert row["tokens_per_s"] == pytest.approx(4 * tiny.BLOCK / median_of(gpt_run, row["case_id"]))
        assert row["peak_share"] > 0 and row["mfu_estimate"] > 0 and row["flops_estimate"] > 0
        assert row["time_to_first_step_s"] >= row["first_call_s"] > 0
    assert got["train_step[user_gpt-adamw-cpu-compile-b4]"]["correct"] is True
    report = (gpt_run.run_dir / "report.md").read_text()
    assert "tokens/s" in report and "MFU" in report


def median_of(run, case_id: str) -> float:
    for line in (run.run_dir / "cases.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["extra_info"]["case_id"] == case_id:
            return row["stats"]["median"]
    raise AssertionError(case_id)


@pytest.mark.slow
def test_a_planted_wrong_compiled_output_of_a_gpt_ends_wrong_result(tmp_path):
    run = run_bench(tmp_path, "--model-module", "tests.user_gpt", "--models", "user_gpt_wrong", "--phases",
                    "forward", "--modes", "compile", "--compile-backend", "eager")
    (row,) = rows(run).values()
    assert row["status"] == Status.WRONG_RESULT.value, row
    # The message names how far off float64 eager the output is, a finite number (not a NaN nor a crash).
    assert row["error"].startswith("wrong result: the output is off float64 eager by "), row["error"]
    assert math.isfinite(float(row["error"].split(" eager by ")[1].split()[0]))


@pytest.mark.slow
def test_bad_token_inputs_exit_2_before_measuring(tmp_path):
    # End to end once; test_workload_refusals_name_the_value checks each refusal's message in-process
    # ("takes images", "does not take images", the sequence bound, channels_last, no floating output).
    for args, message in ((["--models", "gpt_cpu", "--seq-lens", "65"], "at most 64 tokens"),):
        run = run_bench(tmp_path / args[-1], *args, "--phases", "forward")
        assert run.proc.returncode == 2 and message in run.proc.stdout + run.proc.stderr, run.proc.stdout[-2000:]
        assert not (tmp_path / args[-1]).exists() or not any((tmp_path / args[-1]).rglob("cases.jsonl"))


def test_the_gate_shows_tokens_per_second_and_mfu_beside_a_token_workloads_times(tmp_path):
    import subprocess
    import sys

    from tests.helpers import ROOT
    from tests.synthetic import entry, rounds, write_run

    gpt, mlp = case(), Case("train_step", "fashion_mlp", "adam", "cpu", "eager")
    tokens_per_call = 4 * tiny.BLOCK

    def side(name: str, median: float) -> Path:
        times = rounds(median, spread=0.001)
        return write_run(tmp_path / name, [
            entry(gpt, times, tokens_per_s=tokens_per_call / float(np.median(times)), peak_share=0.01 / median),
            entry(mlp, rounds(0.001, spread=0.001))])

    base, head = side("base", 0.010), side("head", 0.015)  # the GPT's step 50% slower
    proc = subprocess.run([sys.executable, "-m", "reports", "gate", str(base), str(head), "--output",
                           str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    gate_md = (tmp_path / "out" / "gate.md").read_text()
    regression = gate_md.split("### Regressions")[1].split("###")[0]
    assert "| 6,401 → 4,267 |" in regression and "| 100.0% → 66.7% |" in regression  # tokens/s, MFU
    assert "tokens/s" not in gate_md.split("unchanged cases")[1]  # the image model's table has no such column


def test_check_accuracy_times_the_loop_a_user_writes_for_a_token_train_step():
    from bench.commands.check_accuracy import hand_writable, hand_written_loop

    gpt = Case("train_step", "gpt_cpu", "adamw", "cpu", "eager", batch_size=2)
    assert hand_writable(gpt)
    assert not hand_writable(replace(gpt, phase="forward", optimizer=None))
    assert not hand_writable(replace(gpt, mode="compile"))
    assert not hand_writable(Case("train_step", "lenet", "adam", "cpu", "eager"))
    loop = hand_written_loop(gpt)
    model = inspect.getclosurevars(loop).nonlocals["model"]  # its own, built fresh from the registration
    before = [p.detach().clone() for p in model.parameters()]
    loop()
    after = list(model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(after, before))  # one AdamW step moved the weights
