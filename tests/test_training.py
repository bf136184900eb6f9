"""The fine-tuning engine: recipes and the global batch, answer-only masking, the grouped and the original
split, resume after a kill, LoRA, the accelerate entry point; all on the tiny model and the mini set, on the CPU."""

import dataclasses
import json
import os
import shlex
import subprocess
import sys
import textwrap
from dataclasses import asdict

import pytest
import torch

from appsneo_utils import cells, checkpoints, finetune, modeling, train_data, training, training_figures
from appsneo_utils.params import ALL, Profile
from appsneo_utils.data import load_apps
from appsneo_utils.modeling import load_model, tiny_model
from conftest import ROOT

# Small and quick: 6 training problems (12 examples), 2 held out, 512-token blocks.
QUICK = dict(block_size=512, batch_size=2, max_train_problems=6, val_problems=2, learning_rate=3e-3,
             warmup_steps=2, log_every=1, epochs=2)


def settings_for(profile, **params):
    return training.TrainSettings.from_params(profile=profile, **params)


def quick(tmp_path, name="run", **overrides):
    return settings_for("smoke", output_dir=str(tmp_path / name), **{**QUICK, **overrides})


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_model(0)[1]


@pytest.fixture(scope="module")
def mini_all():
    return load_apps("mini", split="all", verbose=False)


def test_defaults_are_the_original_recipe():
    s = training.TrainSettings()
    assert (s.model, s.data, s.block_size, s.batch_size, s.learning_rate, s.warmup_steps) == (
        "EleutherAI/gpt-neo-1.3B", "codeparrot/apps", 1024, 3, 8e-5, 800)
    assert (s.adam_beta1, s.adam_beta2, s.weight_decay, s.epochs, s.precision, s.grad_accum) == (
        0.9, 0.98, 0.1, 5, "bf16", 1)
    assert (s.profile, s.report_to, s.all_data, s.lora, s.resume) == ("auto", "none", False, False, "auto")
    assert (s.recipe, s.optimizer, s.global_batch, s.split_rule, s.max_grad_norm) == ("card", "adamw", 24, "grouped",
                                                                                      1.0)
    assert all(f.metadata["help"] for f in dataclasses.fields(training.TrainSettings))


def test_recipes_layer_under_the_profile_and_the_values_passed():
    repo = settings_for("full", recipe="repo")
    assert (repo.optimizer, repo.learning_rate, repo.warmup_steps, repo.global_batch) == ("adafactor", 2e-5, 5000, 24)
    assert (repo.weight_decay, repo.max_grad_norm, repo.epochs) == (0.0, 0.0, 5), "optax.adafactor's defaults"
    assert settings_for("full", recipe="card") == settings_for("full")
    full = settings_for("full", recipe="replica")
    assert (full.all_data, full.split_rule, full.learning_rate, full.epochs) == (True, "original", 8e-5, 5)
    smoke = settings_for("smoke", recipe="replica")
    assert (smoke.all_data, smoke.split_rule, smoke.epochs, smoke.learning_rate, smoke.model) == (
        True, "original", 60, 3e-3, "tiny")
    assert settings_for("smoke", recipe="replica", epochs="2", all_data=None).epochs == 2
    assert settings_for("smoke").global_batch == 0, "the embedded default keeps 3 sequences per step"
    explicit = settings_for("full", grad_accum="2")
    assert (explicit.grad_accum, explicit.global_batch) == (2, 0), "an explicit grad_accum turns global_batch off"
    with pytest.raises(ValueError, match="grad_accum or global_batch, not both"):
        settings_for("full", grad_accum=2, global_batch=24)
    with pytest.raises(ValueError, match="recipe must be one of"):
        settings_for("full", recipe="paper")
    # the profile stands over the recipe, the recipe's embedded-default values over both
    smoke_repo = settings_for("smoke", recipe="repo")
    assert (smoke_repo.optimizer, smoke_repo.learning_rate, smoke_repo.warmup_steps, smoke_repo.weight_decay) == (
        "adafactor", 2e-3, 20, 0.0)


def test_the_parameters_cell_words_say_what_the_layered_defaults_are():
    for f in dataclasses.fields(training.TrainSettings):
        words = f.metadata.get("by_profile")
        if not words:
            continue
        for profile in ("full", "smoke"):
            for recipe in ("card", "repo", "replica"):
                value = training.TrainSettings.defaults_for(Profile(profile, "test"), {"recipe": recipe})[f.name]
                assert repr(value) in words, f"{f.name} is {value!r} under {profile}/{recipe}: {words!r}"


def test_the_generated_cell_left_alone_gives_the_profiles_defaults():
    namespace = {}
    exec(cells.generated("02_finetune")["parameters"], namespace)
    for profile in ("full", "smoke"):
        from_cell = training.TrainSettings.from_notebook({**namespace, "profile": profile}, verbose=False)
        assert from_cell == settings_for(profile), profile
    assert settings_for("full").global_batch == 24, "grad_accum left at None keeps the global batch"


def test_the_global_batch_of_24_on_any_number_of_devices():
    card = settings_for("full")
    plans = {n: training.batch_plan_for(card, n) for n in (1, 2, 4, 8)}
    assert {n: (p.accumulation, p.global_batch) for n, p in plans.items()} == {
        1: (8, 24), 2: (4, 24), 4: (2, 24), 8: (1, 24)}
    assert "3 per device x 1 processes x 8 accumulation = 24" in plans[1].summary()
    odd = training.batch_plan_for(card, 5)
    assert odd.global_batch == 30 and "not a multiple of 15" in odd.summary()
    smoke = training.batch_plan_for(settings_for("smoke"), 2)
    assert (smoke.accumulation, smoke.global_batch) == (1, 6) and "grad_accum as set" in smoke.summary()


def test_smoke_profile_and_papermill_strings(tmp_path):
    s = settings_for("smoke", all_data="true", batch_size="2", learning_rate="1e-3", max_steps=None)
    assert (s.model, s.data, s.all_data, s.batch_size, s.learning_rate, s.max_steps) == ("tiny", "mini", True, 2,
                                                                                         1e-3, None)
    assert settings_for("smoke", all_data="false").all_data is False
    assert settings_for("full").model == "EleutherAI/gpt-neo-1.3B"
    with pytest.raises(ValueError, match=r"all_data must be true or false.*'maybe'"):
        settings_for("smoke", all_data="maybe")
    with pytest.raises(ValueError, match="precision must be one of"):
        settings_for("smoke", precision="fp8")
    with pytest.raises(ValueError, match="unknown settings for TrainSettings: batchsize"):
        settings_for("smoke", batchsize=3)
    assert settings_for("smoke", resume="True").resume == "true"
    assert settings_for("smoke", resume=False).resume == "false"
    with pytest.raises(ValueError, match="resume must be one of auto, true, false"):
        settings_for("smoke", resume="maybe")
    # None is the profile's default everywhere; "all" is a word
    left_out, none = settings_for("smoke"), settings_for("smoke", max_val_examples=None)
    assert left_out.max_val_examples == none.max_val_examples == 1000
    assert settings_for("smoke", max_val_examples="all").max_val_examples == ALL
    assert settings_for("smoke", max_val_examples="12").max_val_examples == 12
    # profile "auto" on a machine without a GPU is the embedded default
    if not torch.cuda.is_available():
        assert settings_for("auto").profile == "smoke"


def test_answer_only_masking_and_eos(tmp_path, tokenizer):
    data = train_data.prepare_data(quick(tmp_path), tokenizer, verbose=False)
    eos = tokenizer.eos_token_id
    for example in data.train + data.val:
        ids, labels = example["input_ids"], example["labels"]
        n_prompt = labels.index(next(x for x in labels if x != -100))
        assert n_prompt > 0 and all(x == -100 for x in labels[:n_prompt]), "the prompt is masked"
        assert labels[n_prompt:] == ids[n_prompt:], "every answer token has a loss"
        assert tokenizer.decode(ids[:n_prompt]).endswith("\nANSWER:\n")
        assert (ids[-1] == eos and labels[-1] == eos) != example["truncated"], "EOS ends every untruncated example"
        assert len(ids) <= 512
    batch = train_data.collate(data.train[:2], eos)
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all(), "padding has no loss"
    assert "ends with EOS: True" in train_data.describe_example(data.sample, tokenizer)


def test_overlong_examples_are_counted(tmp_path, tokenizer):
    data = train_data.prepare_data(quick(tmp_path, block_size=320, val_problems=8, max_train_problems="all"),
                                 tokenizer, verbose=False)
    c = data.counts["train"]
    assert c["dropped"] > 0 and c["kept"] + c["dropped"] == c["examples"]
    assert all(len(e["input_ids"]) <= 320 for e in data.train) and c["truncated"] > 0
    assert "dropped" in data.summary()


@pytest.mark.parametrize("all_data", [True, False])
def test_grouped_split_has_no_problem_on_both_sides(tmp_path, tokenizer, mini_all, all_data):
    settings = quick(tmp_path, all_data=all_data, max_train_problems="all", val_problems=5)
    data = train_data.prepare_data(settings, tokenizer, verbose=False)
    train, val = set(data.train_problems), set(data.val_problems)
    assert len(val) == 5 and not train & val
    splits = {s for s, _ in train | val}
    assert splits == ({"train", "test"} if all_data else {"train"})
    # every solution of a held-out problem is held out: examples are counted per problem
    solutions = {(r["split"], r["problem_id"]): len(r["solutions_list"]) for r in mini_all.to_dict("records")}
    assert data.counts["val"]["examples"] == sum(solutions[k] for k in val)
    # shuffled with the seed, not the tail of the rows
    keys = sorted(solutions) if all_data else sorted(k for k in solutions if k[0] == "train")
    assert data.val_problems != keys[-5:] or data.val_problems != keys[:5]
    other = train_data.split_problems(keys, 5, seed=1)[1]
    assert set(other) != val and train_data.split_problems(keys, 5, seed=settings.seed)[1] == data.val_problems


def test_original_rule_reproduces_run_clm_apps_cut(tmp_path, tokenizer, mini_all):
    """A hand-computed pooled set: train 0 (3 solutions), train 1 (2), test 0 (4), test 1 (1), test 2 (3).

    13 examples, train then test by id; int(0.9 * 13) = int(11.7) = 11 train: all of train 0, train 1,
    test 0, test 1 and the FIRST solution of test 2; test 2's other two solutions validate.
    """
    sizes = {("train", 0): 3, ("train", 1): 2, ("test", 0): 4, ("test", 1): 1, ("test", 2): 3}
    frame = mini_all[[(s, p) in sizes for s, p in zip(mini_all.split, mini_all.problem_id)]].copy()
    frame["solutions_list"] = [[f"print({p}, {k})\n" for k in range(sizes[(s, p)])]
                               for s, p in zip(frame.split, frame.problem_id)]
    frame = frame.sample(frac=1, random_state=3)  # the rows' order must not matter: ids decide
    keys = [k for k in train_data.dataset_order(sizes) for _ in range(sizes[k])]
    assert train_data.dataset_order(sizes) == [("train", 0), ("train", 1), ("test", 0), ("test", 1), ("test", 2)]
    cut, seen, held_out = train_data.original_cut(keys)
    assert (cut, seen, held_out) == (11, list(sizes), [("test", 2)])
    settings = quick(tmp_path, all_data=True, split_rule="original", max_train_problems="all")
    data = train_data.prepare_data(settings, tokenizer, frame=frame, verbose=False)
    assert (data.counts["pooled_examples"], data.counts["cut"]) == (13, 11)
    assert (data.counts["train"]["examples"], data.counts["val"]["examples"]) == (11, 2)
    assert data.train_problems == list(sizes) and data.val_problems == [("test", 2)]
    assert data.test_problems_unseen() == [] and data.test_problems_trained == 3
    record = training.trained_problems_record(settings, data)
    assert (record["split_rule"], record["cut"], record["train"][-1]) == ("original", 11, ["test", 2])
    assert "int(0.9 x 13) = 11 trained" in data.summary()
    with pytest.raises(ValueError, match="set all_data=True"):
        train_data.prepare_data(quick(tmp_path, split_rule="original", max_train_problems="all"), tokenizer,
                              verbose=False)


def test_epoch_batches_cover_the_data_and_shard_across_processes():
    one = train_data.epoch_batches(10, 3, 1, seed=0, epoch=0)
    assert one == train_data.epoch_batches(10, 3, 1, seed=0, epoch=0), "a function of (seed, epoch) only"
    assert one != train_data.epoch_batches(10, 3, 1, seed=0, epoch=1)
    assert set(sum(one, [])) == set(range(10)) and all(len(b) == 3 for b in one)
    two = train_data.epoch_batches(10, 2, 2, seed=0, epoch=0)
    assert all(len(b) == 4 for b in two) and set(sum(two, [])) == set(range(10))


def test_packing_keeps_every_token_and_mask():
    examples = [{"input_ids": [1] * n, "labels": [-100] * (n - 2) + [5, 6]} for n in (3, 4, 5, 9)]
    blocks = train_data.pack(examples, 10)
    assert [len(b["input_ids"]) for b in blocks] == [7, 5, 9]
    assert [x for b in blocks for x in b["labels"]] == [x for e in examples for x in e["labels"]]


def test_packing_option(tmp_path, tokenizer):
    data = train_data.prepare_data(quick(tmp_path, packing=True, block_size=1024), tokenizer, verbose=False)
    assert data.counts["packed_blocks"] == len(data.train) < data.counts["train"]["kept"]
    assert all(len(b["input_ids"]) <= 1024 for b in data.train)


def _losses(history):
    return [(e["step"], e["loss"]) for e in history["train"]], [(e["step"], e["loss"]) for e in history["val"]]


def _same_curve(a, b):
    assert [s for s, _ in a] == [s for s, _ in b]
    assert [x for _, x in a] == pytest.approx([x for _, x in b], rel=1e-5, abs=1e-6)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the quick run, 12 steps, checkpoint every 3, never interrupted."""
    settings = quick(tmp_path_factory.mktemp("ref"), max_steps=12, save_steps=3)
    return training.run(settings)


def test_run_writes_model_metrics_and_trained_problems(uninterrupted):
    result = uninterrupted
    assert result.completed and result.step == 12 and result.total_steps == 12
    train, val = _losses(result.history)
    assert [s for s, _ in train] == list(range(1, 13)) and [s for s, _ in val][0] == 0
    assert val[-1][1] < val[0][1], "the validation loss falls"
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["val_loss"] == pytest.approx(val[-1][1]) and metrics["perplexity"] > 1
    record = json.loads((result.model_dir / "trained_problems.json").read_text())
    trained, held_out = {tuple(k) for k in record["train"]}, {tuple(k) for k in record["validation"]}
    assert len(trained) == 6 and len(held_out) == 2 and not trained & held_out
    assert training.load_trained_problems(result.model_dir) == {tuple(k) for k in record["train"]}
    provenance = modeling.read_provenance(result.model_dir)  # a contamination check reads this folder by it
    assert provenance["base_model"] == result.settings.model and provenance["trained_problems"] == "trained_problems.json"
    # 03_sample loads it by path
    model, tokenizer = load_model(str(result.model_dir), device="cpu")
    ids = tokenizer("\nQUESTION:\nAdd two numbers.\n", return_tensors="pt")["input_ids"]
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3
    kept = sorted(p.name for p in (result.run_dir / "checkpoints").iterdir())
    assert kept == ["step-00000009", "step-00000012"], "save_total_limit=2 keeps the newest two"


KILLER = textwrap.dedent("""
    import os, signal, sys
    from appsneo_utils import training
    settings = training.TrainSettings.from_params(profile="smoke", output_dir=sys.argv[1], **{settings!r})
    def die(state):
        if state.step == 8:  # after step 8; the last checkpoint is step 6
            os.kill(os.getpid(), signal.SIGKILL)
    training.run(settings, on_step=die)
""")


def test_resume_after_a_kill_continues_the_same_curve(tmp_path, uninterrupted):
    params = {**QUICK, "max_steps": 12, "save_steps": 3}
    out = tmp_path / "killed"
    proc = subprocess.run([sys.executable, "-c", KILLER.format(settings=params), str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000003", "step-00000006"]
    settings = settings_for("smoke", output_dir=str(out), **params)
    assert checkpoints.find_checkpoint(settings).name == "step-00000006"
    resumed = training.run(settings)  # resume="auto" finds step 6
    assert resumed.completed and resumed.step == uninterrupted.step == 12
    for got, want in zip(_losses(resumed.history), _losses(uninterrupted.history)):
        _same_curve(got, want)
    a = resumed.model.state_dict()
    b = uninterrupted.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in b)


def test_stop_after_then_resume(tmp_path, uninterrupted):
    first = training.run(quick(tmp_path, max_steps=12, save_steps=3, stop_after=5))
    assert not first.completed and first.step == 5 and not first.model_dir.exists()
    second = training.run(quick(tmp_path, max_steps=12, save_steps=3))
    assert second.step == 12
    for got, want in zip(_losses(second.history), _losses(uninterrupted.history)):
        _same_curve(got, want)
    # a finished run that is run again resumes at its end: nothing is retrained
    third = training.run(quick(tmp_path, max_steps=12, save_steps=3))
    assert third.step == 12 and third.history == second.history


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    training.run(quick(tmp_path, max_steps=2))
    other = quick(tmp_path, max_steps=2, learning_rate=1e-3)
    assert checkpoints.find_checkpoint(other) is None
    with pytest.raises(ValueError, match="learning_rate"):
        checkpoints.find_checkpoint(quick(tmp_path, max_steps=2, learning_rate=1e-3, resume="true"))
    with pytest.raises(FileNotFoundError):
        checkpoints.find_checkpoint(quick(tmp_path / "nothing", resume="true"))
    assert checkpoints.find_checkpoint(quick(tmp_path, max_steps=2, resume="false")) is None


def test_lora_trains_only_adapters_and_saves_a_plain_model(tmp_path):
    settings = quick(tmp_path, lora=True, lora_r=4, max_steps=3, learning_rate=1e-2)
    model, tokenizer = training.build_model(settings, verbose=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    result = training.run(settings, model=model, tokenizer=tokenizer)
    assert result.completed
    saved, _ = load_model(str(result.model_dir), device="cpu")
    base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p for n, p in before.items()
            if "lora_" not in n}
    changed = [n for n, p in saved.named_parameters() if not torch.equal(p, base[n])]
    assert changed and all(any(t in n for t in ("q_proj", "k_proj", "v_proj", "out_proj")) for n in changed)
    assert json.loads((result.run_dir / "metrics.json").read_text())["memory_option"] == "LoRA"


def test_attention_setting_reaches_the_model(monkeypatch, tmp_path):
    import appsneo_utils.modeling as modeling

    calls = []
    monkeypatch.setattr(modeling, "use_fast_attention", lambda model, backend: calls.append(backend) or model)
    training.build_model(quick(tmp_path, attention="eager"), verbose=False)
    assert calls == []
    if not torch.cuda.is_available():
        assert training.resolve_attention(quick(tmp_path)) == "eager", "auto is eager on a CPU"
    training.build_model(quick(tmp_path, attention="sdpa"), verbose=False)
    training.build_model(quick(tmp_path, attention="flex"), verbose=False)
    assert calls == ["sdpa", "flex"]
    with pytest.raises(ValueError, match="attention"):
        quick(tmp_path, attention="fast")


def test_cli_has_every_setting_and_calls_run(monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit):
        finetune.main(["--help"])
    usage = capsys.readouterr().out
    assert all(f"--{name} " in usage for name in training.TrainSettings.parameter_names() + ["figures"])
    seen = []
    monkeypatch.setattr(training, "run", lambda settings: seen.append(settings) or training.RunResult(
        settings, {"train": [], "val": []}, {}, True, 0, 0))
    finetune.main(["--profile", "smoke", "--all_data", "true", "--output_dir", str(tmp_path), "--figures", "false"])
    assert seen[0].all_data is True and seen[0].model == "tiny"
    assert seen[0].max_val_examples == 1000, "an unset flag takes the default"
    finetune.main(["--profile", "smoke", "--max_val_examples", "all", "--output_dir", str(tmp_path),
                   "--figures", "false"])
    assert seen[1].max_val_examples == ALL


def test_accelerate_launch_runs_the_same_function(tmp_path, isolated_outputs):
    """`accelerate launch -m appsneo_utils.finetune` (CPU, one process) = training.run in this process."""
    params = {**QUICK, "max_steps": 4}
    flags = [x for k, v in params.items() for x in (f"--{k}", str(v))]
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    proc = subprocess.run(
        launcher + ["-m", "appsneo_utils.finetune", "--profile", "smoke", "--all_data", "true",
                    "--output_dir", str(tmp_path / "launched")] + flags,
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    launched = json.loads((tmp_path / "launched" / "history.json").read_text())
    here = training.run(settings_for("smoke", all_data=True, output_dir=str(tmp_path / "here"), **params))
    for got, want in zip(_losses(launched), _losses(here.history)):
        _same_curve(got, want)
    saved = json.loads((tmp_path / "launched" / "settings.json").read_text())
    assert saved == {**asdict(here.settings), "output_dir": str(tmp_path / "launched")}
    _, figures = isolated_outputs
    assert sorted(p.name for p in (figures / "02_finetune").glob("*.png")) == [
        "learning_rate.png", "loss.png", "tokens_per_s.png"]


def test_two_processes_on_cpu(tmp_path, isolated_outputs):
    """Data-parallel over two CPU processes (gloo): the path `accelerate launch --multi_gpu` takes on GPUs."""
    out = tmp_path / "ddp"
    flags = [x for k, v in {**QUICK, "max_steps": 4}.items() for x in (f"--{k}", str(v))]
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "appsneo_utils.finetune",
         "--profile", "smoke", "--output_dir", str(out), "--figures", "false"] + flags,
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 per device x 2 processes" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_processes"] == 2 and metrics["completed"] and metrics["step"] == 4


def test_compiled_blocks_train_like_plain_ones_and_come_back_plain(tmp_path):
    plain = training.run(quick(tmp_path, "plain", attention="sdpa", max_steps=3))
    compiled = training.run(quick(tmp_path, "compiled", attention="sdpa", max_steps=3, compile=True))
    a, b = _losses(plain.history)[0], _losses(compiled.history)[0]
    assert [s for s, _ in a] == [s for s, _ in b]
    assert [x for _, x in a] == pytest.approx([x for _, x in b], rel=1e-4)
    assert not any(getattr(block, "_compiled_call_impl", None) for block in compiled.model.transformer.h)
    load_model(str(compiled.model_dir), device="cpu")  # parameter names unchanged by the compile


def test_adafactor_recipe_trains(tmp_path):
    result = training.run(quick(tmp_path, optimizer="adafactor", max_steps=4))
    losses = [e["loss"] for e in result.history["train"]]
    assert result.completed and all(torch.isfinite(torch.tensor(losses)))
    assert type(training.make_optimizer(result.model, result.settings)).__name__ == "Adafactor"


def test_figures_say_what_they_show_and_on_what(tmp_path):
    history = {"train": [{"step": 1, "loss": 2.0, "lr": 1e-3, "tokens_per_s": 10.0}],
               "val": [{"step": 0, "loss": 3.0}]}
    replica = settings_for("smoke", recipe="replica", output_dir=str(tmp_path))
    figs = training_figures.plot_history(history, replica)
    titles = {name: fig.axes[0].get_title() for name, fig in figs.items()}
    for title in titles.values():
        assert "tiny GPT-Neo on mini APPS (train+test pooled)" in title and "original unshuffled 90% cut" in title
    assert "loss" in titles["loss"].lower() and "nats" in figs["loss"].axes[0].get_ylabel()
    folder = tmp_path / "my-model"
    folder.mkdir()
    local = settings_for("full", model=str(folder))
    assert "my-model on codeparrot/apps (train split)" in training_figures.run_label(local)
    assert str(tmp_path) not in training_figures.run_label(local), "never an absolute path"


def test_the_launch_command_gives_back_the_same_settings(tmp_path):
    settings = settings_for("smoke", recipe="replica", grad_accum=2, max_val_examples="all", resume="false",
                            output_dir=str(tmp_path / "a run"))
    line = training.launch_command(settings, num_processes=2)
    assert line.startswith("accelerate launch --multi_gpu --num_processes 2 -m appsneo_utils.finetune --profile smoke")
    assert "--all_data" not in line, "what the recipe sets is not repeated"
    flags = shlex.split(line.split(" -m appsneo_utils.finetune ", 1)[1])
    assert training.TrainSettings.parse_args(flags, prog="finetune", description="")[0] == settings
