"""Evaluation: lm-evaluation-harness tasks (`lm_eval_model`, `periodic`) and perplexity (`perplexity`).

Names load on first use: perplexity needs no lm-eval, and importing lm-eval takes a second.
`lit_gpt.evaluation.lm_eval_model` must be imported for lm-eval to know the model name `lit_gpt`.
"""

_WHERE = {
    "LitGPTLM": "lm_eval_model",
    "lm_eval_cli": "lm_eval_model",
    "run_lm_eval_tasks": "periodic",
    "flatten_results": "periodic",
    "task_manager": "periodic",
    "perplexity_on_shards": "perplexity",
    "perplexity_on_text": "perplexity",
    "text_windows": "perplexity",
    "read_documents": "perplexity",
    "single_device_fabric": "perplexity",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"lit_gpt.evaluation.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'lit_gpt.evaluation' has no attribute {name!r}")
