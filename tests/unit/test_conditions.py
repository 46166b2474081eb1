"""Which runtime settings are build conditions of which stage kinds (conditions.py)."""

from ouroboros.config import RuntimeConfig
from ouroboros.experiment.conditions import conditions, mismatches


def test_conditions_by_kind():
    rt = RuntimeConfig(device="cuda:1", threads=3, micro_batch_size=4, eval_batch_size=9)
    assert conditions("train", {}, rt) == {"device": "cuda", "threads": 3,
                                           "micro_batch_size": 4, "eval_batch_size": 9}
    assert conditions("generate", {"generation": {"backend": "hf"}}, rt) == {
        "device": "cuda", "threads": 3, "generation_batch_size": 256}
    assert "generation_batch_size" not in conditions("curate", {}, rt)  # no refill: no sampling
    assert conditions("evaluate", {}, rt)["eval_batch_size"] == 9
    for kind in ("data", "pool", "trainset", "tokenizer", "mixture"):
        assert conditions(kind, {}, rt) == {}
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
