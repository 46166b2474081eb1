"""The augment stage: LLM2LLM's targeted augmentation (Lee et al. 2024).

Generation g's student answers every real training (seed) example greedily; for each it gets
wrong, the teacher writes ``per_example`` new examples like it (``target: random``, the
control: as many accepted teacher examples as the targeted policy's of the same seed and
generation, for seed examples drawn at random). Only seed examples are shown to the teacher,
never synthetic ones. Each reply is parsed into a source and a target, refused if the target
states no answer (or was cut at ``max_new_tokens`` inside it), refused if its source repeats a
held-out (test or validation) problem's, and de-duplicated against every example so far: the
seed data, earlier generations' teacher examples and this generation's (the same words, or a
ROUGE-L F1 of the sources at or above ``dedup``). The accepted
examples are this stage's samples; policy accumulate joins them with the seed data and every
earlier generation's, and the student retrains from its base.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import numpy as np

from ouroboros.config import GenerationConfig, ServerConfig, TeacherConfig
from ouroboros.data import arithmetic
from ouroboros.experiment.builders.job import Job
from ouroboros.experiment.stages import derive_seed, read_jsonl, write_jsonl
from ouroboros.generation.hf import generate_with_model
from ouroboros.generation.server import complete as server_complete
from ouroboros.models.checkpoint import load_checkpoint

MAX_ROUNDS = 20  # the random control draws seed examples until it matches, at most this often


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two token lists (longest common subsequence)."""
    if not a or not b:
        return float(a == b)
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    return 2 * lcs / (len(a) + len(b))


class Dedup:
    """Sources so far: ``seen(source)`` says whether one repeats any of them (the same words,
    case and spacing aside, or a ROUGE-L F1 at or above ``threshold``); ``add`` keeps one."""

    def __init__(self, sources: list[str], threshold: float) -> None:
        self.threshold = threshold
        self.exact: set[str] = set()
        self.tokens: list[tuple[list[str], Counter]] = []
        for source in sources:
            self.add(source)

    def seen(self, source: str) -> bool:
        tokens = source.lower().split()
        if " ".join(tokens) in self.exact:
            return True
        if self.threshold >= 1:
            return False
        t, n, bag = self.threshold, len(tokens), Counter(tokens)
        for other, other_bag in self.tokens:
            m = len(other)
            # ROUGE-L F1 = 2 LCS / (n + m), and LCS <= min(n, m) and <= the shared words
            # (with multiplicity): the exact LCS runs only where those bounds reach t.
            if (2 * min(n, m) >= t * (n + m)
                    and 2 * sum((bag & other_bag).values()) >= t * (n + m)
                    and rouge_l(tokens, other) >= t):
                return True
        return False

    def add(self, source: str) -> None:
        tokens = source.lower().split()
        self.exact.add(" ".join(tokens))
        if self.threshold < 1:
            self.tokens.append((tokens, Counter(tokens)))


def score_student(job: Job, real: list[dict]) -> list[dict]:
    """The student's greedy answer to every seed example, and whether it is right."""
    model, tokenizer = load_checkpoint(job.input("model") / "model", job.device)
    encoder = job.model_encoder(job.input("model"), tokenizer)
    gcfg = GenerationConfig.model_validate(job.spec["prediction"])
    done = generate_with_model(
        model, tokenizer, job.prompt_ids(encoder, [e["source"] for e in real]), gcfg,
        seed=job.spec["seed"], batch_size=job.runtime.generation_batch_size,
        device=job.device, progress=job.runtime.progress)
    return [{"id": e["id"], "prediction": c.text, "correct": job.task.check(c.text, e["target"])[1]}
            for e, c in zip(real, done, strict=True)]


class Teacher:
    """Writes new examples like seed examples; keeps what it cost."""

    def __init__(self, job: Job, cfg: TeacherConfig) -> None:
        self.job, self.cfg = job, cfg
        self.cost = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "cached": 0,
                     "seconds": 0.0}
        self.pattern = re.compile(cfg.parse)
        self._model = None

    def name(self) -> str:
        if self.cfg.kind == "server":
            return f"teacher:server:{self.cfg.server.model}"
        return f"teacher:{self.cfg.kind}" + (f":{self.cfg.model}" if self.cfg.model else "")

    def prompt(self, example: dict) -> str:
        return (self.cfg.template.replace("{source}", example["source"])
                .replace("{target}", example["target"]))

    def write(self, shown: list[dict], seeds: list[int]) -> list[tuple[str | dict, bool]]:
        """One (reply, finished) per shown seed example: the oracle's example as a dict, else
        the teacher's text and whether it ended before ``max_new_tokens``."""
        t0 = time.perf_counter()
        self.cost["requests"] += len(shown)
        try:
            if self.cfg.kind == "oracle":
                spec = self.job.checked_source().spec
                return [(arithmetic.similar(spec, e["source"], np.random.default_rng(s)), True)
                        for e, s in zip(shown, seeds, strict=True)]
            gcfg = GenerationConfig(decoding="sample", temperature=self.cfg.temperature,
                                    max_new_tokens=self.cfg.max_new_tokens)
            prompts = [self.prompt(e) for e in shown]
            if self.cfg.kind == "server":
                server = ServerConfig.model_validate(self.job.stage.access["server"])
                if server.spec() != self.job.spec["teacher"]["server"]:
                    raise ValueError("the server settings differ from the stage's spec")
                answers, info = server_complete(server, prompts, seeds, gcfg, self.job.run_dir,
                                                where="teacher: server")
                for key in ("prompt_tokens", "completion_tokens", "paid_completion_tokens",
                            "cached", "retries"):
                    self.cost[key] = self.cost.get(key, 0) + info[key]
                for key in ("served_as", "system_fingerprints"):
                    self.cost[key] = sorted(set(self.cost.get(key, [])) | set(info[key]))
                self.cost["base_url"] = info["base_url"]
                return [(a.text, a.finished) for a in answers]
            return self._sample(prompts, gcfg, seeds)
        finally:
            self.cost["seconds"] += time.perf_counter() - t0

    def _sample(self, prompts: list[str], gcfg: GenerationConfig,
                seeds: list[int]) -> list[tuple[str, bool]]:
        """A Hugging Face causal model's replies, sampled here, each with its own seed."""
        if self._model is None:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            where = {"revision": self.cfg.revision} if self.cfg.revision else {}
            tokenizer = AutoTokenizer.from_pretrained(self.cfg.model, **where)
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(self.cfg.model, **where)
            self._model = (model.to(self.job.device).eval(), tokenizer)
        model, tokenizer = self._model
        ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if tokenizer.bos_token_id is not None:
            ids = [[tokenizer.bos_token_id, *p] for p in ids]
        done = generate_with_model(model, tokenizer, ids, gcfg, seed=0, row_seeds=seeds,
                                   batch_size=self.job.runtime.generation_batch_size,
                                   device=self.job.device, progress=self.job.runtime.progress)
        self.cost["prompt_tokens"] += sum(len(p) for p in ids)
        self.cost["completion_tokens"] += sum(c.new_tokens for c in done)
        return [(c.text, c.finished) for c in done]

    def parse(self, reply: str | dict, finished: bool = True) -> tuple[dict | None, str | None]:
        """(the new example, None) or (None, why it is refused)."""
        if isinstance(reply, dict):
            return reply, None
        found = self.pattern.search(reply)
        if found is None:
            return None, "unparsed"
        source, target = found.group("source").strip(), found.group("target").strip()
        if not source or not target:
            return None, "unparsed"
        if not finished and found.end() >= len(reply.rstrip()):
            return None, "unfinished"  # cut at max_new_tokens: its answer may be cut too
        if self.job.task.answer(target) is None:
            return None, "no answer"
        return {"source": source, "target": target}, None


def build_augment(job: Job, out: Path) -> dict:
    """samples.jsonl: the accepted teacher examples of generation g; teacher.jsonl: every
    reply with its decision; scored.jsonl: the student's answers to the seed examples."""
    cfg = TeacherConfig.model_validate(job.spec["teacher"] | (
        {"server": job.stage.access["server"]} if "server" in job.stage.access else {}))
    seed, g = job.spec["seed"], job.spec["g"]
    real = job.real("train")
    earlier = [r for s in job.stage.deps["earlier"] for r in read_jsonl(job.dir(s) /
                                                                           "samples.jsonl")]
    dedup = Dedup([e["source"] for e in real] + [r["source"] for r in earlier], cfg.dedup)
    held_out = Dedup([e["source"] for split in ("test", "valid") for e in job.real(split)],
                     cfg.dedup)
    teacher = Teacher(job, cfg)
    info: dict = {"seed_examples": len(real), "teacher": teacher.name(), "target": cfg.target}
    if cfg.target == "wrong":
        scored = score_student(job, real)
        write_jsonl(out / "scored.jsonl", scored)
        wrong = {s["id"] for s in scored if not s["correct"]}
        rounds = [[e for e in real if e["id"] in wrong]]
        quota = None
        info["wrong"] = len(wrong)
    else:  # as many accepted examples as the targeted policy's, for random seed examples
        matched = job.input("match")
        quota = len(read_jsonl(matched / "samples.jsonl"))
        shown = len(read_jsonl(matched / "teacher.jsonl"))  # its requests in its one round
        order = np.random.default_rng(derive_seed(seed, "random-seed-examples", g,
                                                  cfg.seed)).permutation(len(real))
        rounds = [[real[i] for i in order[:-(-shown // cfg.per_example)]]] if shown else []
        info["quota"] = quota
    kept: list[dict] = []
    replies: list[dict] = []
    r = 0
    while rounds and r < MAX_ROUNDS:
        shown = [e for e in rounds.pop(0) for _ in range(cfg.per_example)]
        ks = [k % cfg.per_example for k in range(len(shown))]
        seeds = [derive_seed(seed, "teacher", g, cfg.seed, r, e["id"], k)
                 for e, k in zip(shown, ks, strict=True)]
        for e, k, (reply, finished) in zip(shown, ks, teacher.write(shown, seeds),
                                           strict=True):
            new, why = teacher.parse(reply, finished)
            if new is not None and held_out.seen(new["source"]):
                why = "held-out problem"  # never train on a test or validation problem
            elif new is not None and dedup.seen(new["source"]):
                why = "duplicate"
            if new is not None and why is None and quota is not None and len(kept) >= quota:
                why = "over quota"
            record = {"round": r, "prompted_by": e["id"], "k": k,
                      "reply": reply if isinstance(reply, str) else None, "finished": finished,
                      **(new or {}), "kept": why is None, **({"reason": why} if why else {})}
            replies.append(record)
            if why is None:
                dedup.add(new["source"])
                kept.append({"id": f"aug-g{g}-{len(kept)}", "source": new["source"],
                             "target": new["target"], "origin": "synthetic", "generation": g,
                             "model": teacher.name(), "generator": cfg.label,
                             "teacher": cfg.label, "prompted_by": e["id"],
                             "request": len(replies) - 1, "finished": True})
        r += 1
        if quota is not None and len(kept) < quota:  # the control draws on until it matches
            order = np.random.default_rng(derive_seed(seed, "random-seed-examples", g,
                                                      cfg.seed, r)).permutation(len(real))
            need = -(-(quota - len(kept)) // cfg.per_example)
            rounds.append([real[i] for i in order[:need]])
    reasons: dict[str, int] = {}
    for rec in replies:
        if "reason" in rec:
            reasons[rec["reason"]] = reasons.get(rec["reason"], 0) + 1
    info.update(prompted=len({rec["prompted_by"] for rec in replies}), replies=len(replies),
                accepted=len(kept), refused=reasons, rounds=r, cost=teacher.cost)
    if quota is not None and len(kept) < quota:
        info["short"] = quota - len(kept)
        print(f"  augment: the random control has {len(kept)} of the {quota} teacher examples "
              f"it matches after {r} rounds", flush=True)
    if job.data.source == "arithmetic":  # the teacher's answers checked against the truth
        spec = job.checked_source().spec
        right = [arithmetic.true_answer(k["source"], spec) == arithmetic.answer_of(k["target"])
                 for k in kept]
        info["teacher_right"] = sum(right) / len(right) if right else None
    write_jsonl(out / "teacher.jsonl", replies)
    write_jsonl(out / "samples.jsonl", kept)
    return info
