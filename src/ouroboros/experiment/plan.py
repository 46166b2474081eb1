"""Planning: a pure function from a study config to the graph of its stages.

For every seed: sample the real data, build the frozen tokenizer. For every cell (policy x
seed), generation by generation:

    trainset(g)  = real data (g = 0) or policy(real, samples of generations < g, fresh data)
    train(g)     = a model trained on trainset(g) (from scratch or from model g-1)
    generate(g)  = model g's synthetic samples (the data of generation g+1)
    evaluate(g)  = metrics of model g and its samples against REAL held-out data

A policy with a teacher (LLM2LLM) has augment(g) in generate(g)'s place: the teacher's new
examples like the seed examples model g gets wrong. A back-translation policy has
backtranslate(g) there: a backward model's sources for never-used real targets.

Each stage's spec holds every setting its build reads (the task through the data stage every
stage depends on), so its fingerprint is right by construction. Generation 0 does not depend
on the policy, so cells with the same seed share it (same fingerprint, computed once).
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from ouroboros import registry
from ouroboros.config import PolicyConfig, StudyConfig
from ouroboros.experiment import inputs
from ouroboros.experiment.builders import job
from ouroboros.experiment.stages import Stage
from ouroboros.metrics import slices as slicing


@dataclass
class Cell:
    """One chain of generations: a policy and a seed, with its evaluation stages in order."""

    policy: PolicyConfig
    seed: int
    evaluations: list[Stage] = field(default_factory=list)
    slices: list[Stage] = field(default_factory=list)

    @property
    def name(self) -> str:
        """``<policy label>-s<seed>``."""
        return f"{self.policy.display}-s{self.seed}"


@dataclass
class Plan:
    """Every stage of a study once, in an order where inputs come first, and the cells."""

    stages: list[Stage]
    cells: list[Cell]


# -- planning ---------------------------------------------------------------------------------

def make_source(cfg: StudyConfig):
    """The configured data source, told which record fields the task reads."""
    return job.make_source(cfg.data, cfg.task.name)


def plan_study(cfg: StudyConfig) -> Plan:
    """All stages of the study; identical stages (shared generation 0) appear once."""
    cfg = inputs.pinned(cfg)  # Hub names resolved to commits, recorded in the specs
    source = make_source(cfg)
    unique: dict[str, Stage] = {}

    def add(stage: Stage) -> Stage:
        return unique.setdefault(stage.fp, stage)

    cells = []
    augments: dict[tuple, Stage] = {}  # (policy label, seed, g) -> its teacher's examples
    # A random-augmentation control reads its targeted policy's stages: plan those first.
    planning = sorted(cfg.policies, key=lambda p: p.teacher is not None
                      and p.teacher.match is not None)
    for seed in cfg.seeds:
        data = add(Stage("data", f"s{seed}", {"source": source.fingerprint(test=False),
                                              "seed": seed, "task": cfg.task.model_dump()}))
        test = add(Stage("test", f"s{seed}", {"source": source.fingerprint()}, {"data": data}))
        tok = add(Stage("tokenizer", f"s{seed}", tokenizer_spec(cfg.model.model_dump(), cfg),
                        {"data": data}))
        mine = {p.display: Cell(p, seed) for p in cfg.policies}
        cells += mine.values()
        for policy in planning:
            _plan_cell(cfg, mine[policy.display], data, test, tok, add, augments)
    return Plan(list(unique.values()), cells)


def _generator_model(cfg: StudyConfig, source) -> dict:
    """The model settings of one generator (None: the study's model)."""
    return cfg.model.model_dump() if source is None else source.model_settings(cfg.model)


def tokenizer_spec(model: dict, cfg: StudyConfig) -> dict:
    """What a tokenizer stage depends on: the model family, its tokenizer settings, weights,
    and for a word-level tokenizer of the ground-truth language its closed vocabulary (the
    language's lexicon: every sentence of the language is encodable)."""
    spec = {"model": model["name"], "tokenizer": model["tokenizer"],
            "vocab_size": model["vocab_size"], "pretrained": model["pretrained"],
            "revision": model.get("revision"),
            "trust_remote_code": model.get("trust_remote_code") or None,
            **inputs.model_files(model, "pretrained")}
    if cfg.data.source == "grammar" and model["tokenizer"] == "word" and not model["pretrained"]:
        spec["vocabulary"] = "lexicon"
    return spec


def policy_spec(policy: PolicyConfig) -> dict:
    """A policy's settings as its training sets depend on them: a server generator by what
    it generates, not where it is reached or how hard it is pushed."""
    spec = policy.model_dump()
    for g, settings in zip(policy.generators or [], spec.get("generators") or [], strict=True):
        if g.server is not None:
            settings["server"] = g.server.spec()
    return spec


def cell_curation(cfg: StudyConfig, policy: PolicyConfig) -> list:
    """The curation steps of a policy's cells: its own, else the study's."""
    return cfg.curation if policy.curation is None else policy.curation


def cell_order(cfg: StudyConfig, policy: PolicyConfig) -> str:
    """The training order of a policy's cells from generation 1 on."""
    return policy.order or cfg.training.order


def metric_versions(cfg: StudyConfig) -> dict[str, int]:
    """The code version of every configured metric: a new version re-runs the evaluations."""
    return {name: importlib.import_module(registry.METRICS.entries[name].split(":")[0]).VERSION
            for name in cfg.metrics.names}


def evaluation_spec(cfg: StudyConfig) -> dict:
    """What evaluation reads of the generation settings: how test sources are decoded for
    conditional tasks, and the prompt length the continuation metrics skip."""
    spec: dict = {}
    if registry.TASKS.get(cfg.task.name).conditional:
        spec["prediction"] = cfg.generation.model_copy(
            update={"decoding": cfg.metrics.eval_decoding}).model_dump()
    if cfg.generation.prompt == "real-prefix":
        spec["prefix_words"] = cfg.generation.prefix_words
    return spec


def _server_stage(source, label: str, generation: dict, cfg: StudyConfig, cell: Cell, g: int,
                  data: Stage) -> Stage:
    """Generation g's samples from an LLM behind a server: they depend on the real prompts
    and the server's model, not on the cell's training (cells of one seed share them)."""
    spec = {"generation": generation, "task": cfg.task.model_dump(), "g": g, "seed": cell.seed,
            "generator_seed": source.seed or None, "share": source.share,
            "part": request_part(cell.policy, source, g), "generator": source.label,
            "server": source.server.spec()}
    return Stage("generate", f"s{cell.seed}-g{g}-{source.label}", spec, {"data": data},
                 access={"server": source.server.model_dump()})


def request_part(policy: PolicyConfig, source, g: int) -> list[float] | None:
    """The part [lo, hi) of generation g's requests that one of several generators answers:
    the generators that make data in g split one seeded list of requests by their shares, so
    their prompts are disjoint and, with every real source asked once, each is answered once
    (None: the only generator answers every request)."""
    makers = [s for s in policy.generators or [] if s.makes(g)]
    if len(makers) < 2:
        return None
    # One list of cut points for all: a generator's upper bound is the next one's lower bound
    # to the bit (a fresh sum per generator can differ by an ulp and round to another index).
    cuts = [0.0, *itertools.accumulate(float(s.share) for s in makers)]
    cuts[-1] = 1.0
    i = [s.label for s in makers].index(source.label)
    return [cuts[i], cuts[i + 1]]


def _augment_stage(cfg: StudyConfig, cell: Cell, g: int, model: Stage, data: Stage,
                   test: Stage, earlier: list[Stage], augments: dict,
                   add: Callable[[Stage], Stage]) -> Stage:
    """Generation g's teacher examples (LLM2LLM): for the seed examples model g gets wrong,
    or (the control) as many as the targeted policy's for random seed examples."""
    teacher = cell.policy.teacher
    spec = {"teacher": teacher.spec(), "g": g, "seed": cell.seed,
            **inputs.teacher_files(teacher)}
    deps: dict = {"data": data, "test": test, "earlier": list(earlier)}
    if teacher.target == "wrong":  # the student's greedy answers pick the examples
        spec["prediction"] = cfg.generation.model_copy(update={"decoding": "greedy"}).model_dump()
        deps["model"] = model
    else:
        deps["match"] = augments[(teacher.match, cell.seed, g)]
    access = {"server": teacher.server.model_dump()} if teacher.server is not None else None
    # The stage as planned (an identical one of another policy may stand for it).
    stage = add(Stage("augment", f"{cell.policy.display}-s{cell.seed}-g{g}", spec, deps,
                      access=access or {}))
    augments[(cell.policy.display, cell.seed, g)] = stage
    return stage


def _backtranslation_stage(cfg: StudyConfig, cell: Cell, g: int, label: str, train_spec: dict,
                           trainset: Stage, model: Stage, data: Stage, tok: Stage,
                           generation: dict, add: Callable[[Stage], Stage]) -> Stage:
    """Generation g's back-translated pairs: a backward model, trained on generation g's
    training pairs reversed, writes a source for the real target of never-used real examples
    (direction forward: model g writes a target for their real source); model g scores them
    for self-curation."""
    bt = cell.policy.backtranslation
    deps: dict = {"data": data, "forward": model,
                  "pool": add(Stage("pool", f"s{cell.seed}", {}, {"data": data}))}
    if bt.direction == "backward":
        reverse = add(Stage("trainset", f"{label}-backward", {"generation": g, "reverse": True},
                            {"trainset": trainset, "data": data}))
        deps["model"] = add(Stage("train", f"{label}-backward",
                                  {**train_spec, "generation": g, "seed": cell.seed,
                                   "generator": "backward", "direction": "backward"},
                                  {"trainset": reverse, "tokenizer": tok, "data": data}))
    else:
        deps["model"] = model
    return Stage("backtranslate", f"{cell.policy.display}-s{cell.seed}-g{g}",
                 {"backtranslation": bt.model_dump(), "g": g, "seed": cell.seed,
                  "generation": {**generation, "candidates": 1}, "task": cfg.task.model_dump()},
                 deps)


def _plan_cell(cfg: StudyConfig, cell: Cell, data: Stage, test: Stage, tok: Stage,
               add: Callable[[Stage], Stage], augments: dict) -> None:
    """The four stages of every generation of one cell."""
    samples: list[Stage] = []
    model: Stage | None = None
    first: Stage | None = None  # generation 0's model: the frozen reference
    curation = cell_curation(cfg, cell.policy)
    training = cfg.training.model_dump()
    train_spec = {"model": cfg.model.model_dump(), "training": training}
    # Generation 0 trains on real data with the study's settings, shared by every cell; a
    # policy's own training order applies from generation 1 on.
    later_spec = {**train_spec, "training": {**training, "order": cell_order(cfg, cell.policy)}}
    generation = {**cfg.generation.model_dump(),
                  "candidates": cell.policy.candidates or cfg.generation.candidates}
    evaluation = evaluation_spec(cfg)
    sources: list = cell.policy.generators or [None]  # None: the study's model alone
    previous: list = [None] * len(sources)
    for g in range(cfg.generations):
        label = f"s{cell.seed}-g{g}" if g == 0 else f"{cell.policy.display}-s{cell.seed}-g{g}"
        if g == 0:
            trainset = add(Stage("trainset", label, {"generation": 0}, {"data": data}))
        else:
            reads: dict = {"data": data, "samples": list(samples)}
            if cell.policy.name == "fresh":  # never-used real data, from the seed's pool
                reads["pool"] = add(Stage("pool", f"s{cell.seed}", {}, {"data": data}))
            ordered = cell_order(cfg, cell.policy) == "given" or None  # curated order kept
            trainset = add(Stage("trainset", label,
                                 {"generation": g, "policy": policy_spec(cell.policy),
                                  "ordered": ordered}, reads))
        spec = train_spec if g == 0 else later_spec
        models, parts = [], []
        trained = []  # this generation's model of each source (None: a server)
        for j, source in enumerate(sources):
            if source is not None and source.server is not None:  # never trained
                trained.append(None)
                if source.makes(g):
                    parts.append(add(_server_stage(source, label, generation, cfg, cell, g,
                                                   data)))
                continue
            own_tok = tok
            if source is not None and source.own_family:  # e.g. a pretrained model's own
                own_tok = add(Stage("tokenizer", f"s{cell.seed}-{source.label}",
                                    tokenizer_spec(_generator_model(cfg, source), cfg),
                                    {"data": data}))
            deps: dict = {"trainset": trainset, "tokenizer": own_tok, "data": data}
            if cfg.training.init == "previous" and previous[j] is not None:
                deps["init"] = previous[j]
            name = label if source is None else f"{label}-{source.label}"
            model_spec = {**spec, "model": _generator_model(cfg, source)}
            # A generator's own seed selects its own random streams (derived, never another
            # cell's seed); seed 0 with the study's settings is the study's model itself.
            stream = {"generator_seed": source.seed or None} if source else {}
            models.append(add(Stage("train", name, {**model_spec, "generation": g,
                                                     "seed": cell.seed, **stream,
                                                     **inputs.model_files(model_spec["model"],
                                                                          "model.pretrained")},
                                    deps)))
            trained.append(models[-1])
            if source is not None and not source.makes(g):
                continue
            if cell.policy.backtranslation is not None:  # pairs for never-used real data
                parts.append(add(_backtranslation_stage(cfg, cell, g, label, spec, trainset,
                                                        models[-1], data, tok, generation,
                                                        add)))
                continue
            if cell.policy.teacher is not None:  # the teacher writes the synthetic data
                parts.append(_augment_stage(cfg, cell, g, models[-1], data, test, samples,
                                            augments, add))
                continue
            share = {} if source is None else {"share": source.share, "generator": source.label,
                                               "part": request_part(cell.policy, source, g)}
            parts.append(add(Stage("generate", name,
                                   {"generation": generation, "task": cfg.task.model_dump(),
                                    "g": g, "seed": cell.seed, **stream, **share},
                                   {"model": models[-1], "data": data})))
        previous = trained
        model = models[0]  # the evaluated model: the first generator (always trained)
        gen = parts[0] if len(parts) == 1 else add(Stage(
            "mixture", f"{cell.policy.display}-s{cell.seed}-g{g}",
            {"generators": [s.label for s in sources if s.makes(g)]}, {"parts": parts}))
        if curation:  # the policy sees the curated samples; metrics see what was generated
            curate_inputs = {"samples": gen, "data": data}
            if any(s.name == "quality" for s in curation):
                curate_inputs["reference"] = first or model  # generation 0's model
            refill = ({"refill": cell.policy.refill, "generation": generation}
                      if cell.policy.refill else {})
            samples.append(add(Stage("curate", f"{cell.policy.display}-s{cell.seed}-g{g}",
                                     {"curation": [s.model_dump() for s in curation],
                                      "g": g, "seed": cell.seed, **refill,
                                      **inputs.curation_files(curation)}, curate_inputs)))
        else:
            samples.append(gen)
        first = first or model
        own = f"{cell.policy.display}-s{cell.seed}-g{g}"  # a stage this cell does not share
        needs = {"model": model, "samples": gen, "data": data, "test": test}
        if "reference-perplexity" in cfg.metrics.names:
            needs["reference"] = first
        cell.evaluations.append(add(Stage(
            "evaluate", label if len(sources) == 1 and not (cell.policy.teacher or
                                                            cell.policy.backtranslation)
            else own,
            {"metrics": cfg.metrics.model_dump(exclude={"slices"}), "g": g, "seed": cell.seed,
             "metric_versions": metric_versions(cfg), **evaluation,
             **inputs.trait_files(cfg)}, needs)))
        if cfg.metrics.slices:  # metrics by origin, generator and curation outcome
            slice_inputs = {"trainset": trainset, "samples": gen, "data": data,
                            "reference": first}
            if curation and "candidates" in cfg.metrics.slices:
                slice_inputs["curate"] = samples[-1]
            cell.slices.append(add(Stage(
                "slice", label if len(sources) == 1 and not curation and not (
                    cell.policy.teacher or cell.policy.backtranslation) else own,
                {"sets": cfg.metrics.slices, "g": g, "seed": cell.seed,
                 "version": slicing.VERSION}, slice_inputs)))
