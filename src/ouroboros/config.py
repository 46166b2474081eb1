"""The typed config schema of a study, YAML loading, dotted overrides and error reporting.

The defaults of this schema are the built-in demo study. The settings of results live outside
``runtime`` and enter fingerprints; ``runtime`` (threads, device, batch sizes, executor,
progress bars) never does, so no exclusion list is needed. Some runtime settings still change
bits (threads, device, micro- and scoring batch sizes, vLLM's dtype): they are build conditions
that a run directory keeps and refuses to mix (experiment/conditions.py).
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ouroboros import registry

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ConfigError(ValueError):
    """A config that cannot be used; ``problems`` holds one ``dotted.path: message`` each."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        super().__init__(f"{source} has {len(problems)} problem(s):\n"
                         + "\n".join(f"  - {p}" for p in problems))


class Section(BaseModel):
    """A config section: unknown keys are errors, so typos never pass silently; values are
    never coerced (``true`` is not 1, ``"3"`` is not 3) and numbers must be finite."""

    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True,
                              allow_inf_nan=False)


# Bounds that keep a typo (1e12 samples, a million generations) from exhausting memory or
# planning for minutes before any work; far above any study this project runs.
MAX_EXAMPLES = 10_000_000        # examples of one split, or samples of one generation
MAX_SAMPLES_PER_GENERATION = 5_000_000  # requests x candidates, held in memory at once
MAX_CANDIDATES = 256
MAX_GENERATIONS = 1_000
MAX_SEEDS = 1_000
NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}"  # the whole name (fullmatch)


def _path_name(value: str | None) -> str | None:
    """A name that becomes part of a file or folder name: letters, digits and ._+- only,
    starting with a letter or digit, at most 64 characters (so never '', '..', '/' or an
    absolute path)."""
    import re as _re
    if value is not None and not _re.fullmatch(NAME_PATTERN, value):
        raise ValueError(f"{value!r} becomes part of a file name: use letters, digits and "
                         "._+- only, starting with a letter or digit (at most 64 characters)")
    return value


def _valid(section, problems: list[str]):
    """``section`` if there are no problems; else one error listing them all."""
    if problems:
        raise ValueError("; ".join(problems))
    return section


def _plugin(reg: registry.Registry):
    """A validator that accepts only names registered in ``reg``."""
    def check(value: str) -> str:
        return reg.check(value)
    return check


class GrammarConfig(Section):
    """The built-in ground-truth language."""

    seed: int = Field(0, description="Which language: the seed that assigns Zipf ranks to words.")
    zipf_exponent: float = Field(1.1, gt=0, description="Zipf exponent of every open word class.")
    version: int = Field(1, description="Structure version of the language.")
    open_class_size: int | None = Field(
        20, ge=2, description="Most words per open class (nouns, verbs, adjectives, names, "
                                "adverbs, prepositions), a seeded choice with the same Zipf law; "
                                "null: the whole lexicon (about 1,200 words).")


class ArithmeticConfig(Section):
    """The built-in verifiable task: arithmetic problems with exact answers (data/arithmetic.py)."""

    operators: list[Literal["+", "-", "*"]] = Field(
        ["+"], min_length=1, description="Operators of the problems.")
    min_digits: int = Field(1, ge=1, le=6, description="Fewest digits of an operand.")
    max_digits: int = Field(2, ge=1, le=6, description="Most digits of an operand.")
    reverse: bool = Field(True, description="Write answers least significant digit first (the "
                                            "order carries propagate: small models learn it "
                                            "far faster).")
    scratchpad: bool = Field(False, description="Targets show their column sums (addition) "
                                                "before '#### <answer>'.")

    @model_validator(mode="after")
    def _digits(self) -> ArithmeticConfig:
        problems = []
        if self.min_digits > self.max_digits:
            problems.append(f"min_digits {self.min_digits} > max_digits {self.max_digits}")
        if len(set(self.operators)) != len(self.operators):
            problems.append("operators: each once")
        return _valid(self, problems)

    def spec(self):
        """The problem generator's settings."""
        from ouroboros.data.arithmetic import ArithmeticSpec
        return ArithmeticSpec(tuple(self.operators), self.min_digits, self.max_digits,
                              self.reverse, self.scratchpad)


PathOrPair = str | list[str]


class FilesConfig(Section):
    """Real data from local files (data.source: files)."""

    root: str | None = Field(None, description="Folder that relative paths below start from "
                                               "(relative itself: from the working directory).")
    format: Literal["auto", "text", "jsonl", "csv", "tsv", "parquet", "parallel"] = Field(
        "auto", description="File format; auto: from the file extension. parallel: two "
                            "line-aligned text files per split, [source, target].")
    train: PathOrPair | None = Field(None, description="Training split file (or [src, tgt]).")
    valid: PathOrPair | None = Field(None, description="Validation file; null: carved from train.")
    test: PathOrPair | None = Field(None, description="Held-out test file (or [src, tgt]).")
    fields: dict[str, str] = Field(
        default_factory=dict, description="Example field -> column, e.g. {source: document, "
                                          "target: summary}; text tasks use {text: ...}.")


class HFDatasetConfig(Section):
    """A Hugging Face dataset loaded with `datasets` (data.source: hf)."""

    path: str | None = Field(None, description="Dataset name on the Hub, or a builder such as "
                                               "json/csv/parquet/text for local data_files.")
    name: str | None = Field(None, description="Dataset configuration name.")
    revision: str | None = Field(None, description="Dataset revision (commit or tag).")
    data_files: dict[str, str | list[str]] | None = Field(None, description="Split -> files.")
    splits: dict[str, str] = Field(
        default_factory=lambda: {"train": "train", "valid": "validation", "test": "test"},
        description="Our split -> the dataset's split name (omit valid to carve it from train).")
    fields: dict[str, str] = Field(default_factory=dict, description="As in data.files.fields.")


class DataConfig(Section):
    """Where real data comes from and how much of it each split holds."""

    source: str = Field("grammar", description="Data source plug-in: grammar, arithmetic, "
                                                "files, hf.")
    grammar: GrammarConfig = GrammarConfig()
    arithmetic: ArithmeticConfig = ArithmeticConfig()
    files: FilesConfig = FilesConfig()
    hf: HFDatasetConfig = HFDatasetConfig()
    train_size: int | None = Field(3000, gt=0, le=MAX_EXAMPLES,
                                   description="Real training examples (generation "
                                   "0); from files a seeded subsample, null: all.")
    valid_size: int | None = Field(300, gt=0, le=MAX_EXAMPLES,
                                   description="Real validation examples.")
    test_size: int | None = Field(1000, gt=0, le=MAX_EXAMPLES,
                                  description="Real held-out test examples.")

    _check_source = field_validator("source")(_plugin(registry.DATA_SOURCES))

    @model_validator(mode="after")
    def _source_settings(self) -> DataConfig:
        problems = []
        sizes = (self.train_size, self.valid_size, self.test_size)
        if self.source in ("grammar", "arithmetic") and None in sizes:
            problems.append(f"the {self.source} source needs train_size, valid_size and "
                            f"test_size")
        elif self.source == "arithmetic" and sum(sizes) > self.arithmetic.spec().size:
            problems.append(f"train_size + valid_size + test_size = {sum(sizes)} distinct "
                            f"problems, but these operators and digits make only "
                            f"{self.arithmetic.spec().size}")
        if self.source == "files":
            problems += [f"files.{s} is required" for s in ("train", "test")
                         if getattr(self.files, s) is None]
        if self.source == "hf" and not (self.hf.path or self.hf.data_files):
            problems.append("hf.path (or hf.data_files) is required")
        return _valid(self, problems)


class TaskConfig(Section):
    """What the models learn to do."""

    name: str = Field("lm", description="Task plug-in: lm, summarization, translation.")
    block_words: int | None = Field(
        None, gt=1, description="lm: cut the text into blocks of this many whitespace tokens "
                                "(Shumailov et al.: 64); null: each record is one example.")
    max_source_tokens: int | None = Field(
        None, gt=0, description="summarization/translation: tokens of the source kept, in "
                                "training and generation alike; null: half of "
                                "model.context_length for a decoder-only model (the rest for "
                                "the template and the target), 512 for an encoder-decoder one.")

    def source_tokens(self, context_length: int, seq2seq: bool) -> int:
        """``max_source_tokens``, or its default for a model of that context and kind."""
        if self.max_source_tokens is not None:
            return self.max_source_tokens
        return 512 if seq2seq else context_length // 2
    template: str | None = Field(
        None, description="Prompt for decoder-only models with {source} once ({{ and }} for "
                          "literal braces); null: the task's.")
    answer_pattern: str | None = Field(
        None, description="gsm8k / classification: a regular expression with one group, the "
                          "answer in a target or a prediction (the last match counts); null: "
                          "the task's (gsm8k: the text after '####').")
    answer_match: Literal["exact", "numeric"] | None = Field(
        None, description="gsm8k / classification: how answers compare: exact text "
                          "(whitespace normalised) or numeric value (commas, $ and % dropped); "
                          "null: the task's (gsm8k numeric, classification exact).")

    @field_validator("answer_pattern")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            groups = re.compile(value).groups
        except re.error as e:
            raise ValueError(f"not a regular expression ({e})") from None
        if groups != 1:
            raise ValueError(f"needs exactly one group, the answer (it has {groups})")
        return value

    @field_validator("template")
    @classmethod
    def _one_source(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.replace("{{", "").count("{source}") != 1:
            raise ValueError("template needs {source} exactly once")
        others = sorted(set(re.findall(r"(?<!\{)\{(\w*)\}(?!\})", value)) - {"source"})
        if others:
            raise ValueError(f"template: {{{others[0]}}} is not a placeholder (only {{source}} "
                             "is: the source text; write {{ and }} for literal braces)")
        return value

    _check_name = field_validator("name")(_plugin(registry.TASKS))


class LoraConfig(Section):
    """Low-rank adapters (peft) for pretrained models."""

    r: int = Field(8, gt=0, description="Adapter rank.")
    alpha: int = Field(16, gt=0, description="Scaling numerator (alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter input.")
    target_modules: list[str] | None = Field(
        None, description="Module names to adapt; null: peft's default for the architecture.")


class ModelConfig(Section):
    """The model family and size trained at every generation."""

    name: str = Field("tiny-gpt2", description="Model plug-in.")
    n_layer: int = Field(1, gt=0, description="Transformer blocks.")
    n_embd: int = Field(64, gt=0, description="Width of the residual stream.")
    n_head: int = Field(2, gt=0, description="Attention heads; must divide n_embd (head size "
                                              "n_embd / n_head of 32 or more suits vLLM).")
    context_length: int = Field(64, gt=2,
                                description="Most tokens per sequence, BOS/EOS included.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout in every layer.")
    tokenizer: Literal["word", "bpe"] = Field(
        "word", description="Tiny models: word-level, or byte-level BPE, learned from the real "
                            "training split only.")
    vocab_size: int = Field(8000, gt=16, description="BPE vocabulary size.")
    pretrained: str | None = Field(
        None, description="hf-causal / hf-seq2seq: a Hugging Face model name or local folder.")
    revision: str | None = Field(
        None, description="With a Hugging Face Hub name: the commit to load (null: the "
                          "commit the name points to when the study is planned, recorded "
                          "in its stages). A local folder is identified by its content.")
    trust_remote_code: bool = Field(False, description="Run model code from the Hub (off).")
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters (peft) instead of "
                                                      "all weights; null: full fine-tuning.")

    _check_name = field_validator("name")(_plugin(registry.MODELS))

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        problems = []
        if self.n_embd % self.n_head:
            problems.append(f"n_head ({self.n_head}) must divide n_embd ({self.n_embd})")
        pretrained_family = self.name.startswith("hf-")
        if pretrained_family and not self.pretrained:
            problems.append(f"model {self.name} needs pretrained: a model name or folder")
        if not pretrained_family and (self.pretrained or self.lora or self.trust_remote_code
                                      or self.revision):
            problems.append(f"model {self.name} is trained from scratch: pretrained, revision, "
                            "lora and trust_remote_code are for hf-causal / hf-seq2seq")
        return _valid(self, problems)


class TrainingConfig(Section):
    """How each generation's model is trained."""

    epochs: float | None = Field(None, gt=0, description="Passes over the training set "
                                                         "(instead of a token budget).")
    tokens: int | None = Field(160_000, gt=0, description="Training tokens per model, whatever "
                                                          "the training set's size (compute-"
                                                          "matched: accumulate's growing sets "
                                                          "get fewer passes); null: epochs.")
    batch_size: int = Field(32, gt=0, description="Sequences per optimiser step (changes results).")
    lr: float = Field(3e-3, gt=0, description="Peak learning rate of AdamW.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    warmup_fraction: Fraction = Field(0.05, description="Share of steps with linear warm-up.")
    schedule: Literal["cosine", "linear", "constant"] = Field("cosine", description="LR decay.")
    grad_clip: float | None = Field(1.0, gt=0, description="Gradient-norm clip; null: none.")
    init: Literal["scratch", "previous"] = Field(
        "scratch", description="Start each generation from fresh weights or the previous model's.")
    selection: Literal["last", "best"] = Field(
        "last", description="Keep the last epoch's weights or the best on selection_split.")
    selection_split: Literal["real", "synthetic"] | None = Field(
        None, description="Validation split for selection=best. 'real' leaks real signal into "
                          "the loop; 'synthetic' holds out part of each generation's training set.")
    synthetic_valid_fraction: Fraction = Field(
        0.1, description="Share of a generation's training set held out when selecting on it.")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="Forward passes in training: float32, or bfloat16 autocast (GPUs; "
                            "weights, optimiser and checkpoints stay float32). Evaluation and "
                            "generation always run in float32.")
    order: Literal["shuffle", "given", "fixed"] = Field(
        "shuffle", description="shuffle every epoch; given: train in the training set's order "
                               "every epoch (ordered training: e.g. most human-like first); "
                               "fixed: one seeded random order kept every epoch (the control "
                               "arm of ordered training: no reshuffling, no ranking).")

    @model_validator(mode="before")
    @classmethod
    def _one_budget(cls, data: Any) -> Any:
        # Giving one budget alone means "not the other": the default one steps aside.
        if isinstance(data, dict) and data.get("tokens") is not None and "epochs" not in data:
            data = {**data, "epochs": None}
        if isinstance(data, dict) and data.get("epochs") is not None and "tokens" not in data:
            data = {**data, "tokens": None}
        return data

    @model_validator(mode="after")
    def _budget_and_selection(self) -> TrainingConfig:
        problems = []
        if (self.epochs is None) == (self.tokens is None):
            problems.append("set exactly one of epochs and tokens (the other to null)")
        if self.selection == "best" and self.selection_split is None:
            problems.append("selection=best needs selection_split: real or synthetic")
        if self.selection == "last" and self.selection_split is not None:
            problems.append("selection_split is only used with selection=best")
        if self.selection_split == "synthetic" and self.synthetic_valid_fraction >= 1:
            problems.append("synthetic_valid_fraction: 1 holds out the whole training set, so "
                            "nothing is left to train on (use a share below 1)")
        return _valid(self, problems)


class GenerationConfig(Section):
    """How each generation's model produces synthetic data."""

    backend: str = Field("hf", description="Generation backend plug-in.")
    decoding: Literal["sample", "greedy", "beam"] = Field("sample", description="Decoding rule.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature (sampling).")
    top_k: int = Field(0, ge=0, description="Keep the k most likely tokens; 0: off.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus mass kept; 1.0: off.")
    num_beams: int = Field(4, gt=1, description="Beams for decoding=beam.")
    max_new_tokens: int = Field(48, gt=0, description="Longest continuation, in tokens.")
    prompt: Literal["none", "real-prefix"] = Field(
        "none", description="Unconditional samples, or continuations of real training prefixes.")
    prefix_words: int = Field(2, gt=0, description="Words of real prefix for prompt=real-prefix.")
    num_samples: int | None = Field(
        None, gt=0, le=MAX_EXAMPLES,
        description="Synthetic examples per generation; null: the real train size.")
    candidates: int = Field(1, ge=1, le=MAX_CANDIDATES,
                            description="Samples per request (best-of-N keeps one).")

    _check_backend = field_validator("backend")(_plugin(registry.BACKENDS))


CURATION_PARAMS = {"dedup": {"threshold"}, "length": {"min_words", "max_words"},
                   "repetition": {"max_rate"}, "verifier": {"false_accept", "false_reject"},
                   "detector": {"mode", "keep_fraction", "classifier"},
                   "quality": {"mode", "keep_fraction"}, "best-of-n": {"scorer"},
                   "reference": {"threshold"},
                   "model-verifier": {"classifier", "threshold", "model", "revision"},
                   "finished": set()}


STEP_DEFAULTS: dict[str, dict[str, Any]] = {
    "dedup": {"threshold": 0.8}, "length": {"min_words": 1}, "repetition": {"max_rate": 0.2},
    "verifier": {"false_accept": 0.0, "false_reject": 0.0}, "reference": {"threshold": 0.3},
    "model-verifier": {"classifier": "ngram", "threshold": 0.5},
    "detector": {"mode": "filter", "keep_fraction": 0.5, "classifier": "ngram"},
    "quality": {"mode": "filter", "keep_fraction": 0.5}, "best-of-n": {"scorer": "true_logprob"}}


class CurationStepConfig(Section):
    """One curation step applied to synthetic candidates before the policy (in list order)."""

    name: Literal["finished", "dedup", "length", "repetition", "verifier", "reference",
                  "model-verifier", "detector", "quality", "best-of-n"] = Field(
        description="finished, dedup, length, repetition, verifier, reference, model-verifier, "
                    "detector, quality, best-of-n (docs/curation.md).")
    threshold: Fraction | None = Field(None, description="dedup: Jaccard of word 3-grams at "
                                                         "which two samples are duplicates; "
                                                         "reference: lowest chrF (0-1) kept; "
                                                         "model-verifier: lowest P(acceptable).")
    classifier: Literal["ngram", "transformer"] | None = Field(
        None, description="detector / model-verifier: n-gram logistic regression (ngram) or a "
                          "small transformer trained from scratch (transformer).")
    model: str | None = Field(None, description="model-verifier: a Hugging Face sequence "
                                                "classifier (name or folder) used as it is; its "
                                                "last label means acceptable.")
    revision: str | None = Field(
        None, description="With a Hugging Face Hub name: the commit to load (null: the "
                          "commit the name points to when the study is planned, recorded "
                          "in its stages). A local folder is identified by its content.")
    min_words: int | None = Field(None, ge=0, description="length: fewest words kept.")
    max_words: int | None = Field(None, ge=1, description="length: most words kept.")
    max_rate: Fraction | None = Field(None, description="repetition: highest 4-gram "
                                                        "repetition rate kept.")
    false_accept: Fraction | None = Field(None, description="verifier: P(accept | invalid).")
    false_reject: Fraction | None = Field(None, description="verifier: P(reject | valid).")
    mode: Literal["filter", "order", "resample"] | None = Field(
        None, description="detector: keep the most human-like, order by human-likeness, or "
                          "importance-resample.")
    keep_fraction: Fraction | None = Field(None, gt=0, description="detector/quality filter: "
                                                                   "share kept.")
    scorer: Literal["true_logprob", "verifier", "reference", "model_verifier",
                    "human_likeness", "quality"] | None = Field(
        None, description="best-of-n: the score that picks the best candidate of a request.")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        # Each step's defaults live here, not in code, so that they enter fingerprints.
        if isinstance(data, dict) and data.get("name") in STEP_DEFAULTS:
            defaults = dict(STEP_DEFAULTS[data["name"]])
            if data["name"] == "model-verifier" and data.get("model") is not None:
                defaults.pop("classifier")  # a given model is used as it is
            data = {**defaults, **{k: v for k, v in data.items() if v is not None}}
        return data

    @model_validator(mode="after")
    def _own_parameters(self) -> CurationStepConfig:
        allowed = CURATION_PARAMS[self.name]
        given = {k for k in set().union(*CURATION_PARAMS.values()) if getattr(self, k) is not None}
        wrong = sorted(given - allowed)
        problems = [f"step {self.name} takes no {', '.join(wrong)} (it takes: "
                    f"{', '.join(sorted(allowed))})"] if wrong else []
        if self.name == "quality" and self.mode == "resample":
            problems.append("step quality: mode is filter or order")
        if self.model is not None and self.classifier is not None:
            problems.append("step model-verifier: give a classifier to train or a model, "
                            "not both")
        if (self.min_words is not None and self.max_words is not None
                and self.min_words > self.max_words):
            problems.append(f"step length: min_words {self.min_words} > max_words "
                            f"{self.max_words} keeps nothing")
        if self.false_reject is not None and self.false_reject >= 1:
            problems.append("step verifier: false_reject 1 rejects every valid sample, so "
                            "only invalid ones (at false_accept) can pass: use a rate below 1")
        return _valid(self, problems)


class ServerConfig(Section):
    """An LLM behind an OpenAI-compatible server (vLLM's, a hosted API) used as a generator.
    Only ``model``, ``api``, ``template`` and ``system`` change what it generates (and enter
    its stages' fingerprints); where it is reached and how hard it is pushed do not."""

    base_url: str = Field(pattern=r"^https?://\S+$",
                          description="The API root, e.g. http://127.0.0.1:8000/v1 (no "
                                      "user:password@ and no query: a key goes in the "
                                      "variable api_key_env names).")

    @field_validator("base_url")
    @classmethod
    def _no_secret_in_url(cls, value: str) -> str:
        # The address is written to config.yaml and stage records, and shown in messages: a
        # key in it would end up there. Refused without echoing it.
        authority = value.split("://", 1)[-1].split("/", 1)[0]
        if "@" in authority or "?" in value or "#" in value:
            raise ValueError("holds credentials or a query (user:password@, ?key=): not "
                             "allowed, since the address is written to the run and shown "
                             "in messages. Put the key in the environment variable "
                             "api_key_env names")
        from urllib.parse import urlsplit
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is no number
        except ValueError as e:
            raise ValueError(f"not a valid URL ({e})") from None
        if not parts.hostname:
            raise ValueError("not a valid URL (no host)")
        return value
    model: str = Field(min_length=1, description="The served model's name.")
    api: Literal["completions", "chat"] = Field(
        "completions", description="completions (prompt in, text out) or chat (messages).")
    api_key_env: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="The NAME of the environment variable holding the API key (the key itself "
                    "is never in a config, a log or the run); null: no key.")
    template: str = Field("{source}", description="The prompt (completions) or user message "
                                                  "(chat); {source} is the real source text "
                                                  "or prefix.")
    system: str | None = Field(None, description="chat: a system message.")
    concurrency: int = Field(8, gt=0, description="Requests in flight at once.")
    max_retries: int = Field(5, ge=0, description="Retries of a request after a 429, a 5xx, "
                                                  "a timeout or a lost connection, with "
                                                  "exponential backoff.")
    timeout: float = Field(120.0, gt=0, description="Seconds one request may take.")

    @model_validator(mode="after")
    def _system_for_chat(self) -> ServerConfig:
        problems = []
        if self.system is not None and self.api != "chat":
            problems.append("system is a chat message: it needs api chat")
        return _valid(self, problems)

    def spec(self) -> dict:
        """What changes its samples: the model, the API and the prompt."""
        return {"model": self.model, "api": self.api, "template": self.template,
                "system": self.system}


class GeneratorConfig(Section):
    """One of several models whose samples are mixed into a cell's synthetic data (Zhang et
    al.'s strategy 2): the study's model with its own size and seed, another model family (a
    pretrained Hugging Face model by name or folder), both trained each generation on the same
    training set as the others; or an LLM behind a server, never trained."""

    label: str = Field(description="Source tag of its samples, e.g. small or wide.")
    _safe_label = field_validator("label")(_path_name)
    share: Fraction = Field(gt=0, description="Its share of each generation's synthetic data.")
    n_layer: int | None = Field(None, gt=0, description="Its blocks (null: model.n_layer).")
    n_embd: int | None = Field(None, gt=0, description="Its width (null: model.n_embd).")
    n_head: int | None = Field(None, gt=0, description="Its heads (null: model.n_head).")
    seed: int = Field(0, description="Its own random streams (initialisation, batch order, "
                                     "sampling), derived with the cell's seed; 0 with the "
                                     "study's settings: the study's model itself.")
    model: str | None = Field(None, description="Its model plug-in (null: model.name), e.g. "
                                                "hf-causal for a pretrained model.")
    pretrained: str | None = Field(None, description="hf-causal / hf-seq2seq: its Hugging Face "
                                                     "model name or local folder.")
    revision: str | None = Field(
        None, description="With a Hugging Face Hub name: the commit to load (null: the "
                          "commit the name points to when the study is planned, recorded "
                          "in its stages). A local folder is identified by its content.")
    lora: LoraConfig | None = Field(None, description="Its LoRA adapters (pretrained models; "
                                                      "null: full fine-tuning).")
    server: ServerConfig | None = Field(
        None, description="An LLM behind an OpenAI-compatible server: never trained, it "
                          "samples each generation's share from the real prompts.")
    generations: list[int] | None = Field(
        None, min_length=1, description="The generations whose synthetic data it makes, e.g. "
                                        "[0] for a broad model that seeds the loop (null: "
                                        "every generation).")

    @model_validator(mode="after")
    def _server_is_not_trained(self) -> GeneratorConfig:
        problems = []
        if self.server is not None:
            trained = [k for k in ("n_layer", "n_embd", "n_head", "model", "pretrained", "lora",
                                   "revision")
                       if getattr(self, k) is not None]
            if trained:
                problems.append(f"a server generator is not trained: {', '.join(trained)} "
                                f"do not apply")
        if self.generations is not None and len(set(self.generations)) != len(self.generations):
            problems.append("generations: each generation once")
        return _valid(self, problems)

    @property
    def own_family(self) -> bool:
        """Whether it is another model than the study's (own plug-in or pretrained weights)."""
        return self.model is not None or self.pretrained is not None

    def makes(self, g: int) -> bool:
        """Whether it makes synthetic data in generation ``g``."""
        return self.generations is None or g in self.generations

    def model_settings(self, study: ModelConfig) -> dict:
        """Its complete model settings: the study's, with its own size or family."""
        model = study.model_dump()
        model.update({k: v for k in ("n_layer", "n_embd", "n_head")
                      if (v := getattr(self, k)) is not None})
        if self.own_family:
            model.update(name=self.model or study.name, pretrained=self.pretrained,
                         revision=self.revision,
                         lora=None if self.lora is None else self.lora.model_dump())
        return model


TEACHER_TEMPLATE = ("Here is a problem and its correct answer.\nQuestion: {source}\n"
                    "Answer: {target}\nWrite one new problem of the same kind and difficulty, "
                    "with its correct answer, in the same format.\nQuestion:")
# The target ends at a blank line, the next Question: or Answer:, or the reply's end (a
# teacher that writes several examples gives its first).
TEACHER_PARSE = (r"(?s)^\s*(?:Question:)?\s*(?P<source>.+?)\s*\nAnswer:\s*(?P<target>.+?)\s*"
                 r"(?:\n\s*\n|\n\s*(?:Question|Answer):|$)")


class TeacherConfig(Section):
    """LLM2LLM's teacher (Lee et al. 2024): each generation, for every real training example
    the current student gets wrong (``target: wrong``), it writes ``per_example`` new examples
    like it; the new examples are parsed, checked to state an answer and de-duplicated against
    every example so far, and accumulate. ``target: random`` is the control: as many teacher
    examples, for seed examples chosen at random."""

    kind: Literal["oracle", "server", "model"] = Field(
        description="oracle (data.source arithmetic: new problems with the same operator and "
                    "operand digits, exact answers), server (an LLM behind an "
                    "OpenAI-compatible server), model (a Hugging Face causal model by name or "
                    "folder, sampled here).")
    label: str = Field("teacher", description="Tag of its examples (the generator column).")
    _safe_label = field_validator("label")(_path_name)
    target: Literal["wrong", "random"] = Field(
        "wrong", description="wrong: the seed examples the student gets wrong (LLM2LLM); "
                             "random: seed examples drawn at random (the control).")
    match: str | None = Field(
        None, description="target random: the label of the targeted policy whose count of "
                          "accepted teacher examples this one matches, per seed and generation.")
    per_example: int = Field(1, ge=1, le=MAX_CANDIDATES,
                             description="New examples asked for per seed example.")
    dedup: Fraction = Field(
        1.0, gt=0, description="Drop a new example whose source has a ROUGE-L F1 at or above "
                               "this with the source of any example so far (seed, earlier "
                               "generations, this one); 1.0: exact duplicates only.")
    server: ServerConfig | None = Field(None, description="kind server: the LLM's server "
                                                          "(its template must stay {source}).")
    model: str | None = Field(None, description="kind model: Hugging Face model name or folder.")
    revision: str | None = Field(
        None, description="kind model, a Hub name: the commit to load (null: pinned when the "
                          "study is planned).")
    template: str = Field(TEACHER_TEMPLATE, description="The prompt (server, model): "
                                                        "{source} and {target} of the seed "
                                                        "example.")
    parse: str = Field(TEACHER_PARSE, description="Regex with groups source and target that "
                                                  "reads a new example from the teacher's "
                                                  "reply; a reply it does not match, or whose "
                                                  "target states no answer, is refused.")
    temperature: float = Field(1.0, gt=0, description="server, model: sampling temperature.")
    max_new_tokens: int = Field(128, gt=0, description="server, model: longest reply.")
    seed: int = Field(0, description="Its random streams (with the cell's seed).")

    @model_validator(mode="after")
    def _kind_settings(self) -> TeacherConfig:
        problems = []
        if (self.kind == "server") != (self.server is not None):
            problems.append("server: set for kind server, and only then")
        if (self.kind == "model") != (self.model is not None):
            problems.append("model: set for kind model, and only then")
        if self.revision is not None and self.kind != "model":
            problems.append("revision: for kind model only")
        if (self.target == "random") != (self.match is not None):
            problems.append("match: target random needs match (the targeted policy's label), "
                            "and only it takes one")
        if self.server is not None and self.server.template != "{source}":
            problems.append("server.template: the teacher's prompt is teacher.template; leave "
                            "server.template at {source}")
        if self.kind != "oracle":
            try:
                groups = re.compile(self.parse).groupindex
            except re.error as e:
                groups = {}
                problems.append(f"parse: not a valid regex ({e})")
            else:
                if not {"source", "target"} <= set(groups):
                    problems.append("parse: needs the named groups (?P<source>...) and "
                                    "(?P<target>...)")
            if "{source}" not in self.template:
                problems.append("template: needs {source}, the seed example it shows")
        return _valid(self, problems)

    def spec(self) -> dict:
        """What changes its examples (a server by what it generates, not where it is)."""
        spec = self.model_dump()
        if self.server is not None:
            spec["server"] = self.server.spec()
        return spec


class BackTranslationConfig(Section):
    """Back-translation (Sennrich et al. 2016) and its forward control, for source -> target
    tasks: each generation a backward model (the study's model family, trained from scratch on
    the generation's training pairs reversed) writes a source for the real target of each of
    ``size`` never-used real examples (the fresh pool); ``direction: forward`` is forward
    self-training on the same examples (the forward model writes a target for each real
    source). ``keep_fraction``: self-curation (Li et al. 2023), keep that share of the pairs
    the forward model scores highest (mean log-likelihood per target token)."""

    direction: Literal["backward", "forward"] = Field(
        "backward", description="backward: synthetic sources for real targets; forward: "
                                "synthetic targets for real sources (the control).")
    size: int | None = Field(None, gt=0, le=MAX_EXAMPLES,
                             description="Never-used real examples per generation (null: "
                                         "data.train_size).")
    keep_fraction: Fraction | None = Field(
        None, gt=0, description="Self-curation: the share of pairs kept, by the forward "
                                "model's score (null: keep all).")


class PolicyConfig(Section):
    """One data policy of the grid: how generation g's training set is assembled."""

    name: str = Field(description="Policy plug-in: replace, accumulate, accumulate-subsample, "
                                  "mix, fresh.")
    real_fraction: Fraction | None = Field(
        None, description="mix: share of real data at fixed size; fresh: share of new real data.")
    label: str | None = Field(None, description="Name in tables and plots (default: derived).")
    _safe_label = field_validator("label")(_path_name)
    curation: list[CurationStepConfig] | None = Field(
        None, description="Curation steps for this policy's cells (null: the study's).")
    order: Literal["shuffle", "given", "fixed"] | None = Field(
        None, description="Training order for this policy's cells (null: training.order).")
    candidates: int | None = Field(
        None, ge=1, le=MAX_CANDIDATES,
        description="Samples per request for this policy's cells (best-of-N; "
                                "null: generation.candidates).")
    generators: list[GeneratorConfig] | None = Field(
        None, description="Several models making the synthetic data, mixed by share; the "
                          "first is the one evaluated (null: the study's model alone).")
    refill: int | None = Field(
        None, ge=1, description="Generate until accepted: up to this many extra rounds re-ask "
                                "every request curation left without a kept sample (null: "
                                "none; pruning then shrinks the data).")
    backtranslation: BackTranslationConfig | None = Field(
        None, description="The synthetic pairs come from back-translation (or forward "
                          "self-training) of never-used real examples (null: the student "
                          "answers the real training sources).")
    teacher: TeacherConfig | None = Field(
        None, description="LLM2LLM: a teacher writes the synthetic data, new examples like the "
                          "seed examples the student gets wrong (or random ones: the "
                          "control); policy accumulate (null: the student generates).")

    _check_name = field_validator("name")(_plugin(registry.POLICIES))

    @model_validator(mode="after")
    def _fraction_only_where_used(self) -> PolicyConfig:
        uses_fraction = self.name in {"mix", "fresh"}
        problems = []
        if uses_fraction and self.real_fraction is None:
            problems.append(f"policy {self.name} needs real_fraction (between 0 and 1)")
        if not uses_fraction and self.real_fraction is not None:
            problems.append(f"policy {self.name} takes no real_fraction")
        if self.generators and all(g.generations is None for g in self.generators):
            total = sum(g.share for g in self.generators)  # else per generation, in the study
            if abs(total - 1) > 1e-9:
                problems.append(f"generators' shares sum to {total:g}, not 1")
        labels = [g.label for g in self.generators or []]
        if len(set(labels)) != len(labels):
            problems.append("generators need distinct labels")
        return _valid(self, problems)

    @property
    def display(self) -> str:
        """The label shown in tables, plots and stage names."""
        if self.label:
            return self.label
        if self.real_fraction is None:
            return self.name
        return f"{self.name}-{self.real_fraction:g}"


class TraitConfig(Section):
    """One trait measured on the generated samples (metric plug-in ``traits``)."""

    trait: str = Field(description="Name in tables: toxicity, formality, emotion_intensity...")
    _safe_trait = field_validator("trait")(_path_name)
    scorer: Literal["vader", "classifier", "hf"] = Field(
        description="vader (offline emotion intensity), classifier (trained from a labeled "
                    "file), hf (a Hugging Face sequence classifier)")
    file: str | None = Field(None, description="classifier: labeled CSV/TSV file.")
    header: bool = Field(True, description="classifier: the file has a header line.")
    text: str | int | None = Field(None, description="classifier: text column (name or index).")
    label: str | int | None = Field(
        None, description="classifier: label column; hf: the label whose probability is the "
                          "score (null: the model's single regression output).")
    positive: list[str | int] = Field(
        default_factory=list, description="classifier: labels that count as 1 (a cell may "
                                          "hold several, comma-separated).")
    regression: bool = Field(False, description="classifier: the label is a number to predict.")
    model: str | None = Field(None, description="hf: model name or folder.")
    revision: str | None = Field(
        None, description="With a Hugging Face Hub name: the commit to load (null: the "
                          "commit the name points to when the study is planned, recorded "
                          "in its stages). A local folder is identified by its content.")

    @model_validator(mode="after")
    def _complete(self) -> TraitConfig:
        problems = []
        if self.scorer == "classifier":
            problems += [f"scorer classifier needs {k}" for k in ("file", "text", "label")
                         if getattr(self, k) is None]
            if not self.regression and not self.positive:
                problems.append("scorer classifier needs positive labels or regression: true")
        if self.scorer == "hf" and not self.model:
            problems.append("scorer hf needs model")
        return _valid(self, problems)


class MetricsConfig(Section):
    """What is measured for every generation of every cell."""

    names: list[str] = Field(["perplexity", "ground-truth", "diversity", "tails",
                              "reference-perplexity"],
                             description="Metric plug-ins (see `ouroboros ls`).")
    rare_fraction: Fraction = Field(0.5, description="Tail = the least expected share of the "
                                                     "lexicon (ground-truth tail coverage).")
    max_n: int = Field(3, ge=1, le=6, description="Distinct-n and n-gram entropy, n = 1..max_n.")
    mattr_window: int = Field(50, gt=1, description="Window (words) of the moving-average TTR.")
    distinct_window: int = Field(1000, gt=1, description="n-grams per chunk of the "
                                                         "length-controlled distinct_n_window.")
    eval_decoding: Literal["greedy", "beam"] = Field(
        "greedy", description="How test predictions are decoded (summarization/translation).")
    eval_size: int | None = Field(
        None, gt=0, description="Real test examples predicted and scored; null: all.")
    bootstrap: int = Field(1000, ge=0, description="Seeded bootstrap resamples for the 95% "
                                                   "intervals of ROUGE/BLEU/chrF; 0: none.")
    traits: list[TraitConfig] = Field(default_factory=list,
                                      description="Traits scored by the metric 'traits'.")
    slices: list[Literal["trainset", "samples", "candidates"]] = Field(
        ["trainset", "samples", "candidates"],
        description="Sets whose examples are also measured by origin (trainset), generator "
                    "(samples) and curation outcome (candidates), into slices.csv; []: none.")

    @field_validator("names")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        return [registry.METRICS.check(n) for n in names]


class VLLMSettings(Section):
    """vLLM engine settings for generation.backend=vllm. All are build conditions of vLLM
    stages: vLLM's output depends on its version (the Python that has it), dtype and parallelism,
    and on how many sequences share a step, which its memory share and context decide."""

    python: str | None = Field(
        None, description="The Python that has vLLM (e.g. a separate environment with the CPU "
                          "build); null: this one.")
    dtype: str = Field("auto", pattern=r"^(auto|float32|float16|bfloat16)$",
                       description="Weights and activations: auto, float32, float16, bfloat16.")
    tensor_parallel_size: int = Field(1, gt=0, description="GPUs one model is split over.")
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Share of GPU memory (on CPU: of RAM) vLLM reserves; "
                                      "null: 0.8 on CUDA, 0.3 on CPU.")
    max_model_len: int | None = Field(None, gt=0, description="Context vLLM plans for; null: "
                                                               "the model's.")


# The runtime settings that change bits of results (build conditions, experiment/conditions.py):
# a run directory keeps them per stage and never mixes two values.
BUILD_CONDITIONS = ("threads", "device", "micro_batch_size", "eval_batch_size",
                    "generation_batch_size", "vllm.python", "vllm.dtype",
                    "vllm.tensor_parallel_size", "vllm.gpu_memory_utilization",
                    "vllm.max_model_len")


class RuntimeConfig(Section):
    """Speed, memory and display settings: never part of a fingerprint. Those marked "changes
    results" are build conditions: a run directory's stages keep them, and a run refuses to
    reuse or extend stages built with other values (docs/run_directory.md)."""

    threads: int = Field(1, gt=0, description="PyTorch CPU threads per stage; changes results "
                                              "(kernels split their sums by thread). With "
                                              "executor auto, one thread per stage and a "
                                              "stage per core is the fastest on a CPU.")
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$",
                        description="auto (cuda when PyTorch sees a GPU, else cpu), cpu, cuda "
                                    "or cuda:N; changes results (cpu vs cuda).")
    micro_batch_size: int | None = Field(
        None, gt=0, description="Training sequences per forward/backward pass: a batch of "
                                "training.batch_size is split and its gradients accumulated "
                                "(less memory, the same optimiser step up to rounding: changes "
                                "results); null: the whole batch.")
    eval_batch_size: int = Field(128, gt=0, description="Sequences per scoring batch; changes "
                                                        "results (padding to a batch's longest "
                                                        "sequence changes the last bits).")
    generation_batch_size: int = Field(256, gt=0, description="Prompts per generation batch; "
                                                              "changes results where prompts "
                                                              "differ in length (padding).")
    progress: bool = Field(True, description="Progress bars with ETA on a terminal (local "
                                             "executor only).")
    executor: Literal["auto", "local", "processes", "ray"] = Field(
        "auto", description="Who builds the stages: local (one at a time, this process), "
                            "processes (independent stages at once on this machine), ray "
                            "(Ray tasks on a cluster), or auto (processes where the cores fit "
                            "two or more workers at `threads` each on a CPU, else local). "
                            "Results do not depend on it.")
    workers: int | None = Field(
        None, gt=0, description="Stages at once (processes, ray); null: the cores (or the "
                                "cluster's CPUs) divided by threads.")
    keep_checkpoints: Literal["all", "needed"] = Field(
        "all", description="Model weights kept: all, or needed (a checkpoint is deleted once "
                           "every stage that reads it is finished; the last generation's are "
                           "kept, and a later run that reads a deleted one trains it again).")
    accept_rebuilt_weights: bool = Field(
        False, description="keep_checkpoints needed: a deleted model trained again with other "
                           "weights (another device or thread count, or CUDA kernels that are "
                           "not bit-reproducible) is used anyway, recorded as such and logged, "
                           "instead of stopping the run.")
    trackers: list[Literal["mlflow", "tensorboard", "wandb"]] = Field(
        [], description="Experiment trackers that get the study (pip install "
                        "'ouroboros[mlflow]', '[tensorboard]', '[wandb]'): a tracker run per "
                        "cell with the config as parameters, every metric per generation, "
                        "training curves and a table of samples, and a study run with the "
                        "report; logged from finished stages once, resume included; a tracker "
                        "that fails warns and the study goes on. Stored in RUN/trackers unless "
                        "MLFLOW_TRACKING_URI or WANDB_MODE=online say otherwise "
                        "(docs/trackers.md).")
    tracker_project: str | None = Field(
        None, description="The MLflow experiment, W&B project and TensorBoard folder the "
                          "trackers log to; null: the study's name.")
    tracker_samples: int = Field(16, ge=0, description="Samples per generation in a tracker's "
                                                       "samples table.")
    vllm: VLLMSettings = VLLMSettings()
    ray_address: str | None = Field(
        None, description="executor ray: the cluster to join (e.g. 10.0.0.5:6379 or auto); "
                          "null: start a local cluster for the run.")


def _default_policies() -> list[PolicyConfig]:
    return [PolicyConfig(name="replace"), PolicyConfig(name="accumulate"),
            PolicyConfig(name="mix", real_fraction=0.1)]


class StudyConfig(Section):
    """A study: a grid of cells (policy x seed); each cell is a chain of generations."""

    name: str = Field("demo", description="Study name (default run directory: runs/<name>).")

    _safe_name = field_validator("name")(_path_name)
    generations: int = Field(4, ge=1, le=MAX_GENERATIONS,
                             description="Models per cell, generation 0 included.")
    seeds: list[Annotated[int, Field(ge=0)]] = Field([0, 1, 2, 3, 4, 5], min_length=1,
                                                     max_length=MAX_SEEDS,
                             description="One cell per seed and policy.")
    policies: list[PolicyConfig] = Field(default_factory=_default_policies, min_length=1)
    curation: list[CurationStepConfig] = Field(
        default_factory=list, description="Steps applied, in order, to every generation's "
                                          "synthetic samples before the policy uses them.")
    data: DataConfig = DataConfig()
    task: TaskConfig = TaskConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    generation: GenerationConfig = GenerationConfig()
    metrics: MetricsConfig = MetricsConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _distinct_cells(self) -> StudyConfig:
        labels = [p.display for p in self.policies]
        problems = self._fit_problems()
        for j, label in enumerate(labels):
            if label in labels[:j]:
                problems.append(f"policies.{j}.label: policies have the same label {label!r} "
                                f"as policies.{labels.index(label)} (give each a label)")
        repeated = sorted(s for s, n in Counter(self.seeds).items() if n > 1)  # linear
        if repeated:
            problems.append(f"seeds: {repeated} repeat (one cell per seed and policy)")
        return _valid(self, problems)

    def _fit_problems(self) -> list[str]:
        """Settings that are each valid but do not go together."""
        problems = []
        lm = self.task.name == "lm"
        for name in self.metrics.names:
            if name in {"rouge", "bleu"} and lm:
                problems.append(f"metrics.names: {name} scores test predictions; it needs task "
                                f"summarization or translation")
            if name == "ground-truth" and self.data.source != "grammar":
                problems.append("metrics.names: ground-truth needs data.source grammar")
            if name == "traits" and not self.metrics.traits:
                problems.append("metrics.names: traits needs metrics.traits (what to score how)")
        steps = self.curation + [s for p in self.policies for s in (p.curation or [])]
        for i, p in enumerate(self.policies):
            problems += self._server_problems(i, p)
            for j, g in enumerate(p.generators or []):
                where = f"policies.{i}.generators.{j}"
                if g.server is not None:
                    continue
                settings = g.model_settings(self.model)
                sized = (g.n_layer, g.n_embd, g.n_head) != (None, None, None)
                if sized and settings["name"] != "tiny-gpt2":
                    problems.append(f"{where}: its own size needs model tiny-gpt2")
                try:
                    ModelConfig.model_validate(settings)
                except ValidationError as e:
                    problems += [f"{where}: {err['msg'].removeprefix('Value error, ')}"
                                 for err in e.errors()]
                if lm and settings["name"] == "hf-seq2seq":
                    problems.append(f"{where}: task lm needs a decoder-only model")
        for i, p in enumerate(self.policies):
            problems += self._teacher_problems(i, p) + self._backtranslation_problems(i, p)
        for i, p in enumerate(self.policies):
            own = self.curation if p.curation is None else p.curation
            if p.refill and not own:
                problems.append(f"policies.{i}.refill: needs curation steps that reject samples")
            relative = [s.name for s in own if s.name == "detector"
                        or s.name == "quality" and s.mode != "order"]
            if p.refill and relative:
                problems.append(f"policies.{i}.refill: {relative[0]} keeps a share of each "
                                "round, so re-asking never fills the data: use per-sample steps "
                                "(verifier, reference, length, repetition, dedup, finished, "
                                "best-of-n) "
                                "or quality in order mode")
        if (any(s.name == "verifier" for s in steps) and self.data.source != "grammar"
                and not hasattr(registry.TASKS.get(self.task.name), "check")):
            problems.append("curation: the verifier step needs data.source grammar or a task "
                            "with exact answers (arithmetic, gsm8k, classification)")
        if lm and self.model.name == "hf-seq2seq":
            problems.append("model.name: task lm needs a decoder-only model (tiny-gpt2 or "
                            "hf-causal)")
        if (self.model.name == "tiny-gpt2" and self.model.tokenizer == "word"
                and self.data.source not in ("grammar", "arithmetic")):
            problems.append("model.tokenizer: word-level on real text maps every test word the "
                            "training split lacks to [UNK], one cheap shared token, which biases "
                            "perplexity: use bpe (byte-level, an open vocabulary)")
        if lm and self.task.block_words and self.data.source == "grammar":
            problems.append("task.block_words: blocks cut the ground-truth language's sentences "
                            "apart, so they have no exact probability: use whole sentences "
                            "(null) with data.source grammar")
        if not lm and self.data.source == "grammar":
            problems.append(f"task.name: task {self.task.name} needs source/target data "
                            "(data.source files or hf)")
        if self.data.source == "arithmetic" and self.task.name != "arithmetic":
            problems.append("task.name: data.source arithmetic makes arithmetic problems: use "
                            "task arithmetic")
        checked = hasattr(registry.TASKS.get(self.task.name), "check")
        if "accuracy" in self.metrics.names and not checked:
            problems.append(f"metrics.names: accuracy needs a task with exact answers "
                            f"(arithmetic, gsm8k, classification), not {self.task.name}")
        if (self.task.answer_pattern or self.task.answer_match) and (
                not checked or self.task.name == "arithmetic"):
            key = "answer_pattern" if self.task.answer_pattern else "answer_match"
            problems.append(f"task.{key}: task {self.task.name} "
                            f"{'checks digits exactly' if checked else 'has no answers'}, "
                            f"this setting is for gsm8k and classification")
        if self.data.source == "arithmetic":
            problems += self._arithmetic_problems()
        requests = self.generation.num_samples or self.data.train_size or 0
        for i, p in enumerate(self.policies):
            per_generation = requests * (p.candidates or self.generation.candidates)
            if per_generation > MAX_SAMPLES_PER_GENERATION:
                problems.append(f"policies.{i}: {requests} requests x {per_generation // requests}"
                                f" candidates = {per_generation} samples a generation, more than"
                                f" {MAX_SAMPLES_PER_GENERATION:,} held in memory at once")
        for i, p in enumerate(self.policies):
            if (p.order or self.training.order) == "given" and p.name.startswith("accumulate"):
                problems.append(
                    f"policies.{i}.order: given trains in the training set's order, but "
                    f"{p.name} joins real data and several generations' samples, each ranked "
                    f"by its own generation's scores: no one ranking orders them (use replace, "
                    f"mix or fresh, where the real rows come first and the samples keep their "
                    f"curated order)")
        return problems + self._template_problems()

    def _arithmetic_problems(self) -> list[str]:
        """Arithmetic problems whose longest answer the generation budget or the context
        cannot hold (the answer would be cut, so never right)."""
        from ouroboros.data.arithmetic import example
        a = self.data.arithmetic
        spec, top = a.spec(), 10 ** a.max_digits - 1
        problems = []
        if a.scratchpad and "+" not in a.operators:
            problems.append("data.arithmetic.scratchpad: column sums are written for + only")
        longest = max((example(spec, x, op, y) for op in a.operators
                       for x, y in ((top, top), (spec.low, top))),
                      key=lambda e: len(e["target"].split()))
        target, source = len(longest["target"].split()) + 1, len(longest["source"].split())
        if target > self.generation.max_new_tokens:
            problems.append(f"generation.max_new_tokens: {self.generation.max_new_tokens} "
                            f"tokens cut the longest answer ({target} tokens with EOS, for "
                            f"{longest['source']})")
        if self.model.name != "hf-seq2seq" and 1 + source + target > self.model.context_length:
            problems.append(f"model.context_length: {self.model.context_length} tokens cut the "
                            f"longest problem and answer ({1 + source + target} with BOS, EOS)")
        return problems

    def _template_problems(self) -> list[str]:
        """A decoder-only model's prompt (BOS, the template around max_source_tokens of
        source) must leave room for a target in model.context_length: the template is never
        cut. Its tokens are bounded by its UTF-8 bytes (byte-level BPE; a word-level or
        SentencePiece tokenizer uses fewer)."""
        if self.task.name == "lm":
            return []
        template = self.task.template or registry.TASKS.get(self.task.name).default_template
        around = len(template.replace("{source}", "").encode())
        models = [("model", self.model.model_dump())] + [
            (f"policies.{i}.generators.{j}", g.model_settings(self.model))
            for i, p in enumerate(self.policies) for j, g in enumerate(p.generators or [])
            if g.server is None]
        problems = []
        for where, m in models:
            room = m["context_length"] - 1 - around - 1  # BOS, the template, one target token
            source = self.task.source_tokens(m["context_length"], m["name"] == "hf-seq2seq")
            if m["name"] != "hf-seq2seq" and source > room:
                problems.append(
                    f"task.max_source_tokens: {source} source tokens, the "
                    f"template's up to {around} and BOS leave no target token in {where}."
                    f"context_length {m['context_length']}: use at most {max(room, 0)} (the "
                    f"template is never cut)")
        return problems

    def _backtranslation_problems(self, i: int, policy: PolicyConfig) -> list[str]:
        """A back-translation policy: a source -> target task, and nothing that generates
        otherwise."""
        if policy.backtranslation is None:
            return []
        where = f"policies.{i}"
        problems = []
        if self.task.name == "lm":
            problems.append(f"{where}.backtranslation: needs a source -> target task "
                            f"(translation, summarization, ...), not lm")
        if self.model.name == "hf-seq2seq" or self.model.pretrained:
            problems.append(f"{where}.backtranslation: the backward model is the study's "
                            f"family trained from scratch: use model tiny-gpt2")
        for key in ("generators", "candidates", "refill", "teacher"):
            if getattr(policy, key) is not None:
                problems.append(f"{where}.{key}: does not go with backtranslation (its pairs "
                                f"are the synthetic data)")
        if self.curation if policy.curation is None else policy.curation:
            problems.append(f"{where}.curation: back-translated pairs are curated by "
                            f"backtranslation.keep_fraction: set curation: [] for this policy")
        if policy.name not in ("accumulate", "replace"):
            problems.append(f"{where}.name: back-translated pairs join the seed data "
                            f"(accumulate) or replace it (replace); {policy.name} is not "
                            f"supported with backtranslation")
        return problems

    def _teacher_problems(self, i: int, policy: PolicyConfig) -> list[str]:
        """A teacher policy (LLM2LLM): what it needs, and what does not go with it."""
        teacher = policy.teacher
        if teacher is None:
            return []
        where = f"policies.{i}"
        problems = []
        if not hasattr(registry.TASKS.get(self.task.name), "check"):
            problems.append(f"{where}.teacher: needs a task with exact answers (arithmetic, "
                            f"gsm8k, classification): the student is scored on its seed "
                            f"examples")
        if teacher.kind == "oracle" and self.data.source != "arithmetic":
            problems.append(f"{where}.teacher.kind: the oracle writes arithmetic problems: it "
                            f"needs data.source arithmetic")
        if policy.name != "accumulate":
            problems.append(f"{where}.name: a teacher's examples accumulate with the seed "
                            f"data (LLM2LLM): use accumulate")
        for key in ("generators", "candidates", "refill"):
            if getattr(policy, key) is not None:
                problems.append(f"{where}.{key}: the teacher writes this policy's synthetic "
                                f"data, the student generates none")
        if self.curation if policy.curation is None else policy.curation:
            problems.append(f"{where}.curation: the teacher's examples are parsed and "
                            f"de-duplicated, not curated: set curation: [] for this policy")
        if teacher.match is not None:
            labels = [p.display for p in self.policies]
            if teacher.match not in labels:
                problems.append(f"{where}.teacher.match: no policy is labelled "
                                f"{teacher.match!r} (labels: {', '.join(labels)})")
            else:
                other = self.policies[labels.index(teacher.match)].teacher
                mine = teacher.model_dump(exclude={"target", "match"})
                if (other is None or other.target != "wrong"
                        or other.model_dump(exclude={"target", "match"}) != mine):
                    problems.append(f"{where}.teacher.match: {teacher.match!r} must be a "
                                    f"policy with the same teacher and target wrong (the "
                                    f"control differs only in which seed examples it shows)")
        asked = (self.data.train_size or 0) * teacher.per_example
        if asked > MAX_SAMPLES_PER_GENERATION:
            problems.append(f"{where}.teacher.per_example: up to {asked} teacher examples a "
                            f"generation, more than {MAX_SAMPLES_PER_GENERATION:,}")
        return problems

    def _server_problems(self, i: int, policy: PolicyConfig) -> list[str]:
        """A policy's generators: the shares of each generation, and servers' settings."""
        problems: list[str] = []
        generators = policy.generators or []
        where = f"policies.{i}.generators"
        if generators and generators[0].server is not None:
            problems.append(f"{where}.0: the first generator is the evaluated model, so it "
                            f"must be trained: list the server generator after it")
        for j, g in enumerate(generators):
            outside = sorted(k for k in g.generations or [] if not 0 <= k < self.generations)
            if outside:
                problems.append(f"{where}.{j}.generations: {outside} not among the study's "
                                f"generations 0..{self.generations - 1}")
        if any(g.generations is not None for g in generators):
            for k in range(self.generations):
                total = sum(g.share for g in generators if g.makes(k))
                if abs(total - 1) > 1e-9:
                    problems.append(f"{where}: in generation {k} the shares of the generators "
                                    f"that make data sum to {total:g}, not 1")
        servers = [j for j, g in enumerate(generators) if g.server is not None]
        if not servers:
            return problems
        if self.generation.decoding == "beam":
            problems.append(f"{where}.{servers[0]}.server: decoding beam is not an option of "
                            "OpenAI-compatible servers (use sample or greedy)")
        if policy.refill:
            problems.append(f"policies.{i}.refill: re-asking a server generator is not "
                            "supported (use refill with trained generators only)")
        unconditional = self.task.name == "lm" and self.generation.prompt == "none"
        for j in servers:
            server = generators[j].server
            if unconditional and not server.template.replace("{source}", "").strip():
                problems.append(f"{where}.{j}.server.template: unconditional samples (task lm, "
                                f"generation.prompt none) leave {{source}} empty, so the "
                                f"prompt is empty: give text to continue, such as the model's "
                                f"BOS token")
            elif not unconditional and "{source}" not in server.template:
                problems.append(f"{where}.{j}.server.template: needs {{source}}, the real "
                                f"source or prefix the samples answer")
        return problems

    def results_part(self) -> dict[str, Any]:
        """Everything that changes results (all but runtime), as plain data."""
        return self.model_dump(mode="json", exclude={"runtime"})


# -- loading ---------------------------------------------------------------------------------

def _format_error(err: dict) -> list[str]:
    """One line per problem, each with its dotted path (a validator may report several,
    joined by "; "; study-level ones already start with their own path)."""
    path = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key" + _did_you_mean(err["loc"])
    if path:
        return [f"{path}: {msg}"]
    return [part if re.match(r"^[a-z_]+(\.[\w-]+)*: ", part) else f"(top level): {part}"
            for part in msg.split("; ")]


def notices(cfg: StudyConfig) -> list[str]:
    """What a user must know before a run starts: settings that run code from elsewhere, and
    metrics that the settings leave without anything to measure."""
    models = [("model", cfg.model.pretrained, cfg.model.trust_remote_code)] + [
        (f"policies.{i}.generators.{j} (from model)", g.pretrained, cfg.model.trust_remote_code)
        for i, p in enumerate(cfg.policies) for j, g in enumerate(p.generators or [])
        if g.pretrained]
    out = [f"{where}.trust_remote_code is on: code shipped with '{name}' will run on this "
           f"machine" for where, name, on in models if on]
    if (cfg.task.name == "lm" and cfg.generation.prompt == "real-prefix" and cfg.task.block_words
            and cfg.generation.prefix_words >= cfg.task.block_words):
        out.append(f"generation.prefix_words ({cfg.generation.prefix_words}) covers a whole "
                   f"block of task.block_words ({cfg.task.block_words}): no real test text has "
                   f"a continuation after its prefix, so continuation_perplexity is not "
                   f"reported")
    return out


def _did_you_mean(loc: tuple) -> str:
    """`` (did you mean 'lr'?)`` for an unknown key close to a field of its section."""
    import difflib
    model: Any = StudyConfig
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return ""
        inner = field.annotation
        for arg in (*getattr(inner, "__args__", ()), inner):
            for sub in (*getattr(arg, "__args__", ()), arg):
                if isinstance(sub, type) and issubclass(sub, BaseModel):
                    inner = sub
        model = inner
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b.0.c=value`` -> (["a", "b", "0", "c"], value parsed as YAML)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"{item}: an override must look like dotted.key=value"], "override")
    try:
        value = yaml.load(raw, Loader=_UniqueKeyLoader) if raw.strip() else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError([f"{key.strip()}: the value {raw!r} is not valid YAML ({mark})"],
                          "override") from e
    return key.strip().split("."), value


def _child(node: dict, key: str, default: Any) -> Any:
    """``node[key]``, created as an empty section or, for a list, a copy of its default."""
    if key not in node:
        node[key] = copy.deepcopy(default) if isinstance(default, list) else {}
    return node[key]


def apply_overrides(data: dict, overrides: list[str], defaults: dict | None = None) -> list[str]:
    """Set each dotted key in a nested dict/list structure (list items by index).

    A section or list the data lacks starts as its value in ``defaults``, so that
    ``policies.0.real_fraction=0.2`` edits the default policy list. Returns the problems.
    """
    problems = []
    for item in overrides:
        try:
            path, value = parse_override(item)
        except ConfigError as e:
            problems += e.problems
            continue
        node: Any = data
        default: Any = defaults or {}
        for i, part in enumerate(path[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    problems.append(f"{'.'.join(path[:i + 1])}: no list item {part}")
                    break
                node = node[int(part)]
                default = None
            else:
                default = default.get(part) if isinstance(default, dict) else None
                node = _child(node, part, default)
        else:
            last = path[-1]
            if isinstance(node, list):
                if not last.isdigit() or int(last) >= len(node):
                    problems.append(f"{'.'.join(path)}: no list item {last}")
                    continue
                node[int(last)] = value
            elif isinstance(node, dict):
                node[last] = value
            else:
                problems.append(f"{'.'.join(path[:-1])}: is not a section")
    return problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (plain YAML keeps the
    last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise yaml.constructor.ConstructorError(
                    None, None, f"a key must be a name, not a {type(key).__name__}",
                    key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {seen[key] + 1})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(where: str, e: yaml.YAMLError) -> str:
    """``FILE:LINE: what`` for a YAML error."""
    mark = getattr(e, "problem_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None))
                    if x) or str(e)
    return f"{where}{line}: not valid YAML ({what})"


def read_yaml(path: str | Path) -> dict:
    """The mapping in a YAML file; a missing or empty file, a duplicate key or a non-mapping
    is a ConfigError."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError([f"{p}: is a directory, not a config file"], "config")
    if not p.is_file():
        raise ConfigError([f"{p}: no such file"], "config")
    try:
        data = yaml.load(p.read_text(encoding="utf-8-sig"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise ConfigError([f"{p}: not UTF-8 text ({e.reason} at byte {e.start})"],
                          "config") from e
    except yaml.YAMLError as e:
        raise ConfigError([_yaml_problem(str(p), e)], "config") from e
    except RecursionError:
        raise ConfigError([f"{p}: nested too deeply to be a config"], "config") from None
    if data is None:
        raise ConfigError([f"{p}: empty config (for the built-in demo give no CONFIG)"],
                          "config")
    if not isinstance(data, dict):
        raise ConfigError([f"{p}: the top level must be a mapping of sections"], "config")
    return data


def load_config(path: str | Path | dict | StudyConfig | None = None,
                overrides: list[str] | None = None) -> StudyConfig:
    """A validated study config: the YAML at ``path`` (None: the built-in demo; a dict or a
    StudyConfig: that config) + ``dotted.key=value`` overrides.

    Raises ConfigError listing every problem with its dotted path.
    """
    if isinstance(path, StudyConfig):
        data = path.model_dump(mode="json")
    elif isinstance(path, dict):
        data = copy.deepcopy(path)  # the caller's dict is kept as it was
    else:
        data = read_yaml(path) if path is not None else {}
    defaults = StudyConfig().model_dump(mode="json")
    try:
        problems = apply_overrides(data, list(overrides or []), defaults)
        cfg = StudyConfig.model_validate(data)
    except ValidationError as e:
        problems += [line for err in e.errors() for line in _format_error(err)]
    except RecursionError:  # an override nested thousands deep
        problems = ["overrides: a value nested too deeply to be a setting"]
    if problems:
        where = str(path) if isinstance(path, (str, Path)) else "config"
        raise ConfigError(problems, where)
    return cfg


def dump_config(cfg: StudyConfig) -> str:
    """The resolved config as YAML (every field, defaults included)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix(
        "\n...").removesuffix("...").strip()


EXPLAIN_WIDTH = 80  # ``ouroboros config`` fits a terminal this wide


def _commented(pad: str, text: str, comment: str) -> list[str]:
    """``text  # comment`` on one line if it fits EXPLAIN_WIDTH, else the comment wrapped on
    its own lines above the setting."""
    if not comment:
        return [f"{pad}{text}"]
    line = f"{pad}{text}  # {comment}"
    if len(line) <= EXPLAIN_WIDTH:
        return [line]
    import textwrap
    return [*textwrap.wrap(" ".join(comment.split()), EXPLAIN_WIDTH, initial_indent=f"{pad}# ",
                           subsequent_indent=f"{pad}# ", break_long_words=False,
                           break_on_hyphens=False),
            f"{pad}{text}"]


def explain(cfg: BaseModel, indent: int = 0) -> str:
    """The config as YAML with each field's documentation as a comment (``ouroboros config``),
    at most EXPLAIN_WIDTH columns wide where a comment can move above its setting."""
    lines: list[str] = []
    pad = "  " * indent
    for name, info in type(cfg).model_fields.items():
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            doc = (type(value).__doc__ or "").strip().splitlines()[0]
            lines += _commented(pad, f"{name}:", doc)
            lines.append(explain(value, indent + 1))
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            doc = " ".join((type(value[0]).__doc__ or "").split())
            lines += _commented(pad, f"{name}:", doc)
            for item in value:
                body = explain(item, indent + 2).splitlines()
                # comments above the item's first key go above its "- " line
                k = next(i for i, line in enumerate(body) if not line.lstrip().startswith("#"))
                lines += [f"{pad}  {line.lstrip()}" for line in body[:k]]
                lines.append(f"{pad}  - {body[k].lstrip()}")
                lines += body[k + 1:]
        else:
            lines += _commented(pad, f"{name}: {_yaml_scalar(value)}", info.description or "")
    return "\n".join(lines)
