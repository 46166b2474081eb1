"""The three tasks end to end on the real shared data, tiny: alignment of every score with the
original references, real-prefix prompts, fresh real data, and bad input caught up front."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from ouroboros.config import ConfigError, load_config
from ouroboros.experiment.loop import plan_study, run_study
from ouroboros.experiment.stages import read_jsonl
from ouroboros.metrics.references import rouge_per_example

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not found")
TINY = ["generations=2", "seeds=[0]", "data.train_size=40", "data.valid_size=8",
        "data.test_size=16", "training.epochs=1", "model.vocab_size=400", "model.n_embd=16",
        "model.n_head=2", "model.n_layer=1", "metrics.bootstrap=20", "runtime.progress=false",
        "runtime.threads=1", "generation.max_new_tokens=16"]


def _study(name: str, tmp_path: Path, *extra: str):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml",
                      TINY + [f"data.files.root={SHARED / cfg_folder(name)}", *extra])
    plan = run_study(cfg, tmp_path, log=lambda _: None)
    return cfg, plan


def cfg_folder(name: str) -> str:
    return {"wikitext2": "wikitext-2", "dialogsum": "dialogsum", "multi30k": "multi30k"}[name]


def _stage(plan, kind: str, label: str):
    return next(s for s in plan.stages if s.kind == kind and s.label == label)


def _joined(tmp_path, plan, label: str, original: Path, field=None):
    """(predictions, their references read from the ORIGINAL file by the line each id names,
    metrics.json values) of one evaluate stage."""
    evaluation = _stage(plan, "evaluate", label)
    predictions = read_jsonl(tmp_path / evaluation.relpath / "predictions.jsonl")
    lines = original.read_text().splitlines()
    refs = [lines[int(p["id"].split("-L")[1]) - 1] for p in predictions]
    refs = [(json.loads(r)[field] if field else r).strip() for r in refs]
    return predictions, refs, _metrics(tmp_path, evaluation)


def _metrics(tmp_path, stage) -> dict[str, float]:
    rows = json.loads((tmp_path / stage.relpath / "metrics.json").read_text())["values"]
    return {r["metric"]: r["value"] for r in rows}


@needs_shared
def test_summarization_scores_match_original_references(tmp_path):
    _, plan = _study("dialogsum", tmp_path)
    # Join on the file line the id names, in the ORIGINAL test file, not on list positions.
    predictions, refs, got = _joined(tmp_path, plan, "replace-s0-g1",
                                     SHARED / "dialogsum" / "test.jsonl", "summary")
    assert [p["reference"] for p in predictions] == refs
    assert len(predictions) == 16
    recomputed = rouge_per_example([p["prediction"] for p in predictions], refs)
    for t in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert got[t] == pytest.approx(recomputed[t].mean(), abs=1e-9)
    # Generation 1 learned from generation 0's summaries of the real training dialogues.
    samples = read_jsonl(tmp_path / _stage(plan, "generate", "s0-g0").relpath / "samples.jsonl")
    train = {e["id"]: e for e in read_jsonl(tmp_path / _stage(plan, "data", "s0").relpath
                                            / "train.jsonl")}
    assert all(s["source"] == train[s["prompted_by"]]["source"] for s in samples)
    trainset = read_jsonl(tmp_path / _stage(plan, "trainset", "replace-s0-g1").relpath
                          / "trainset.jsonl")
    assert {r["origin"] for r in trainset} == {"synthetic"}


@needs_shared
def test_translation_bleu_matches_sacrebleu_on_original_references(tmp_path):
    _, plan = _study("multi30k", tmp_path)
    predictions, refs, got = _joined(tmp_path, plan, "mix-0.1-s0-g1",
                                     SHARED / "multi30k" / "test_2016_flickr.de")
    hyps = [p["prediction"] for p in predictions]
    assert got["bleu"] == pytest.approx(BLEU().corpus_score(hyps, [refs]).score, abs=1e-9)
    assert got["perplexity"] > 1
    trainset = read_jsonl(tmp_path / _stage(plan, "trainset", "mix-0.1-s0-g1").relpath
                          / "trainset.jsonl")
    assert sum(r["origin"] == "real" for r in trainset) == 4  # 10% of 40
    # The report's samples: per policy, the same real English captions in every generation,
    # each with the translation that generation's model made of it.
    preview = read_jsonl(tmp_path / "samples_preview.jsonl")
    gens = sorted({r["generation"] for r in preview})
    for policy in {r["policy"] for r in preview}:
        mine = [r for r in preview if r["policy"] == policy]
        prompts = {g: [r["prompted_by"] for r in mine if r["generation"] == g] for g in gens}
        assert len(prompts[0]) == 6 and all(p == prompts[0] for p in prompts.values())
        for r in mine:
            stage = _stage(plan, "generate", "s0-g0" if r["generation"] == 0
                           else f"{policy}-s0-g{r['generation']}")
            made = {s["id"]: s for s in read_jsonl(tmp_path / stage.relpath / "samples.jsonl")}
            sample = made[r["id"]]
            assert sample["prompted_by"] == r["prompted_by"] and sample["source"] == r["prompt"]
            assert sample["target"] == r["text"] and r["valid"] is None


@needs_shared
def test_lm_blocks_real_prefixes_and_fresh_pool(tmp_path):
    cfg, plan = _study("wikitext2", tmp_path, "policies=[{name: fresh, real_fraction: 0.5}]")
    data = tmp_path / _stage(plan, "data", "s0").relpath
    train = {e["id"]: e for e in read_jsonl(data / "train.jsonl")}
    assert all(len(e["target"].split()) == 64 for e in train.values())
    samples = read_jsonl(tmp_path / _stage(plan, "generate", "s0-g0").relpath / "samples.jsonl")
    for s in samples:  # each continues the first 16 words of the real block that prompted it
        assert s["source"] == " ".join(train[s["prompted_by"]]["target"].split()[:16])
    rows = read_jsonl(tmp_path / _stage(plan, "trainset", "fresh-0.5-s0-g1").relpath
                      / "trainset.jsonl")
    fresh = [r for r in rows if r["origin"] == "real-fresh"]
    assert len(fresh) == 20 and not {r["id"].split("fresh-g1-")[1] for r in fresh} & set(train)


def _tiny_pretrained(tmp_path: Path, seq2seq: bool) -> Path:
    """A randomly initialised tiny HF model + tokenizer saved locally, as a user's folder."""
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    from ouroboros.models.tokenizer import train_bpe_tokenizer
    tok = train_bpe_tokenizer(["a dog runs in the park", "ein Hund rennt im Park"] * 50, 300)
    if seq2seq:
        model = T5ForConditionalGeneration(T5Config(
            vocab_size=len(tok), d_model=16, d_ff=32, d_kv=8, num_layers=1, num_heads=2,
            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id))
    else:
        model = GPT2LMHeadModel(GPT2Config(
            vocab_size=len(tok), n_positions=128, n_embd=16, n_layer=1, n_head=2,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    path = tmp_path / ("t5" if seq2seq else "gpt2")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _parallel(tmp_path: Path, n: int = 30) -> list[str]:
    for split, k in (("train", n), ("test", 8)):
        (tmp_path / f"{split}.en").write_text("".join(f"a dog {i} runs\n" for i in range(k)))
        (tmp_path / f"{split}.de").write_text("".join(f"ein Hund {i} rennt\n" for i in range(k)))
    return ["data.source=files", f"data.files.root={tmp_path}", "data.files.format=parallel",
            "data.files.train=[train.en, train.de]", "data.files.test=[test.en, test.de]",
            "data.train_size=null", "data.valid_size=4", "data.test_size=null",
            "task.name=translation", "metrics.names=[perplexity, bleu]", "metrics.bootstrap=0",
            "model.tokenizer=bpe", "model.vocab_size=300",
            "generations=2", "seeds=[0]", "training.epochs=1", "runtime.progress=false",
            "generation.max_new_tokens=8", "policies=[{name: replace}]"]


@pytest.mark.parametrize("seq2seq", [True, False])
def test_pretrained_models_by_local_folder_with_lora(tmp_path, seq2seq):
    folder = _tiny_pretrained(tmp_path, seq2seq)
    family = "hf-seq2seq" if seq2seq else "hf-causal"
    modules = "[q, v]" if seq2seq else "[c_attn]"
    cfg = load_config(overrides=_parallel(tmp_path) + [
        f"model.name={family}", f"model.pretrained={folder}", "model.context_length=64",
        f"model.lora={{r: 2, alpha: 4, target_modules: {modules}}}"])
    plan = run_study(cfg, tmp_path / "run", log=lambda _: None)
    ckpt = tmp_path / "run" / _stage(plan, "train", "replace-s0-g1").relpath / "model"
    assert (ckpt / "model.safetensors").is_file() and not (ckpt / "adapter_config.json").exists()
    got = _metrics(tmp_path / "run", _stage(plan, "evaluate", "replace-s0-g1"))
    assert np.isfinite(got["perplexity"]) and "bleu" in got


def test_hf_datasets_source_reads_local_files(tmp_path):
    from ouroboros.experiment.builders.data import real_splits
    from ouroboros.experiment.plan import make_source
    from ouroboros.registry import TASKS
    rows = [{"dialogue": f"d{i} words here", "summary": f"s{i}"} for i in range(20)]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = load_config(overrides=[
        "data.source=hf", "data.hf.path=json", "task.name=summarization",
        "metrics.names=[perplexity, rouge]", "data.train_size=10", "data.valid_size=2",
        "data.test_size=5", "model.tokenizer=bpe",
        f"data.hf.data_files={{train: {tmp_path / 'train.jsonl'}, "
        f"test: {tmp_path / 'test.jsonl'}}}",
        "data.hf.splits={train: train, test: test}",
        "data.hf.fields={source: dialogue, target: summary}"])
    splits = real_splits(cfg.data, cfg.task, make_source(cfg),
                         TASKS.get("summarization")(cfg.task), seed=0)
    assert len(splits.train) == 10 and len(splits.valid) == 2 and len(splits.test) == 5
    assert splits.train[0]["source"].startswith("d") and splits.pool and len(splits.pool) == 8
    assert plan_study(cfg).stages


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ouroboros", *args], capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_bad_input_fails_before_anything_is_written(tmp_path):
    base = _parallel(tmp_path)
    (tmp_path / "short.de").write_text("eins\n")
    out = tmp_path / "out"
    r = _cli("run", "--out", str(out), *base, "data.files.test=[test.en, short.de]")
    assert r.returncode == 2 and "test.en has 8 lines" in r.stderr and "short.de has 1" in r.stderr
    (tmp_path / "bad.de").write_bytes(b"gut\n\xc3\x28 kaputt\n" + b"x\n" * 6)
    r = _cli("run", "--out", str(out), *base, "data.files.test=[test.en, bad.de]")
    assert r.returncode == 2 and "bad.de:2: not valid UTF-8" in r.stderr
    (tmp_path / "empty.en").write_text("")
    (tmp_path / "empty.de").write_text("")
    r = _cli("run", "--out", str(out), *base, "data.files.test=[empty.en, empty.de]")
    assert r.returncode == 2 and "no examples" in r.stderr
    r = _cli("run", "--out", str(out), *base, "model.name=hf-causal",
             "model.pretrained=no-such-org/no-such-model", env={"HF_HUB_OFFLINE": "1"})
    assert r.returncode == 2 and "no-such-org/no-such-model' cannot be loaded" in r.stderr
    assert not out.exists()


@needs_shared
def test_reference_verified_best_of_n_on_translation(tmp_path):
    _, plan = _study("multi30k", tmp_path, "policies=[{name: replace, candidates: 2, curation: "
                     "[{name: reference, threshold: 0.0}, {name: best-of-n, scorer: reference}]}]")
    curate = next(s for s in plan.stages if s.kind == "curate" and s.label == "replace-s0-g0")
    lineage = read_jsonl(tmp_path / curate.relpath / "lineage.jsonl")
    curated = read_jsonl(tmp_path / curate.relpath / "curated.jsonl")
    assert len(lineage) == 80 and len(curated) == 40  # 2 candidates for each of 40 sources
    best = {}
    for r in lineage:
        best[r["request"]] = max(best.get(r["request"], -1.0), r["scores"]["reference"])
    assert all(r["scores"]["reference"] == best[r["request"]] for r in curated)


@pytest.mark.parametrize("seq2seq", [True, False])
def test_pretrained_models_as_extra_generators(tmp_path, seq2seq):
    """A tiny-gpt2 study whose synthetic data is also made by a pretrained HF model (its own
    tokenizer, family and LoRA), mixed by share and tagged by source."""
    folder = _tiny_pretrained(tmp_path, seq2seq)
    family = "hf-seq2seq" if seq2seq else "hf-causal"
    cfg = load_config(overrides=_parallel(tmp_path) + [
        "model.tokenizer=bpe", "model.vocab_size=300", "model.n_embd=16", "model.n_head=2",
        "model.n_layer=1",
        "policies=[{name: replace, label: mixed, generators: [{label: tiny, share: 0.5}, "
        f"{{label: hf, share: 0.5, model: {family}, pretrained: {folder}}}]}}]"])
    plan = run_study(cfg, tmp_path / "run", log=lambda _: None)
    hf_train = _stage(plan, "train", "mixed-s0-g1-hf")
    assert hf_train.deps["tokenizer"].label == "s0-hf"
    assert _stage(plan, "train", "mixed-s0-g1-tiny").deps["tokenizer"].label == "s0"
    config = json.loads((tmp_path / "run" / hf_train.relpath / "model" / "config.json")
                        .read_text())
    assert config.get("is_encoder_decoder", False) is seq2seq
    rows = read_jsonl(tmp_path / "run" / _stage(plan, "mixture", "mixed-s0-g1").relpath
                      / "samples.jsonl")
    assert {r["generator"] for r in rows} == {"tiny", "hf"}
    assert sum(r["generator"] == "hf" for r in rows) == 13  # half of 26 training examples
    assert all(r["model"].startswith("stages/train/mixed-s0-g1-hf") for r in rows
               if r["generator"] == "hf")
    sliced = (tmp_path / "run" / "slices.csv").read_text()
    assert "mixed-s0,mixed,0,1,samples,hf,count,13.0,13" in sliced


def test_generator_model_problems():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["policies=[{name: replace, generators: [{label: a, share: 0.5}, "
                               "{label: b, share: 0.5, model: hf-causal}]}]"])
    assert any(p.startswith("policies.0.generators.1: model hf-causal needs pretrained")
               for p in e.value.problems), e.value.problems
    with pytest.raises(ConfigError, match="its own size needs model tiny-gpt2"):
        load_config(overrides=["policies=[{name: replace, generators: [{label: b, share: 1, "
                               "model: hf-causal, pretrained: x, n_embd: 8}]}]"])
    with pytest.raises(ConfigError, match="task lm needs a decoder-only model"):
        load_config(overrides=["policies=[{name: replace, generators: [{label: b, share: 1, "
                               "model: hf-seq2seq, pretrained: x}]}]"])
