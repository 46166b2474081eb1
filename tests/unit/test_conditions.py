"""Which runtime settings are build conditions of which stage kinds (conditions.py)."""

from ouroboros.config import RuntimeConfig
from ouroboros.experiment.conditions import conditions, mismatches, packages


def test_conditions_by_kind():
    rt = RuntimeConfig(device="cuda:1", threads=3, micro_batch_size=4, eval_batch_size=9)
    libraries = packages(("torch", "transformers", "tokenizers"))
    assert set(libraries) == {"package torch", "package transformers", "package tokenizers"}
    assert conditions("train", {}, rt) == {"device": "cuda", "threads": 3,
                                           "micro_batch_size": 4, "eval_batch_size": 9,
                                           **libraries}
    assert conditions("generate", {"generation": {"backend": "hf"}}, rt) == {
        "device": "cuda", "threads": 3, "generation_batch_size": 256, **libraries}
    assert "generation_batch_size" not in conditions("curate", {}, rt)  # no refill: no sampling
    assert conditions("evaluate", {}, rt)["eval_batch_size"] == 9
    for kind in ("data", "test", "pool", "trainset", "mixture"):
        assert conditions(kind, {}, rt) == {}
    assert set(conditions("tokenizer", {}, rt)) == {"package tokenizers", "package transformers"}
    assert conditions("generate", {"server": {"model": "x"}}, rt) == {}  # no local compute


def test_vllm_settings_are_conditions_of_vllm_sampling_only():
    rt = RuntimeConfig(vllm={"dtype": "bfloat16"})
    vllm = conditions("generate", {"generation": {"backend": "vllm"}}, rt)
    assert vllm["vllm.dtype"] == "bfloat16" and "vllm.tensor_parallel_size" in vllm
    assert "vllm.dtype" in conditions("curate", {"generation": {"backend": "vllm"}}, rt)
    assert "vllm.gpu_memory_utilization" in vllm and "vllm.python" in vllm
    assert "vllm.dtype" not in conditions("evaluate", {"prediction": {"backend": "vllm"}}, rt)
    assert "vllm.dtype" not in conditions("train", {}, rt)


def test_mismatches_name_the_setting_both_values_and_the_count():
    built = RuntimeConfig(device="cpu", threads=1)
    records = [{"kind": k, "spec": {}, "conditions": conditions(k, {}, built)}
               for k in ("train", "evaluate", "data")]
    assert mismatches(records, built) == []
    lines = mismatches(records, RuntimeConfig(device="cuda", threads=1))
    assert lines == ["runtime.device: 2 finished stage(s) of this run directory were built with "
                     "cpu, this run asks for cuda; the value changes results, so use "
                     "runtime.device=cpu here, or a new run directory (--out) for cuda"]
    assert mismatches([{"kind": "train", "spec": {}}], RuntimeConfig(threads=5)) == []


def test_another_library_release_is_refused_with_what_to_install():
    rt = RuntimeConfig(device="cpu", threads=1)
    record = {"kind": "train", "spec": {}, "conditions": {
        **conditions("train", {}, rt), "package torch": "1.0.0"}}
    lines = mismatches([record], rt)
    assert len(lines) == 1 and lines[0].startswith("torch 1.0.0 built 1 finished stage(s)")
    assert "install torch==1.0.0" in lines[0]
