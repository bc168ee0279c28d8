"""The vLLM worker extension Cove ships (``--worker-extension-cls
cove_vllm_worker.CoveWorkerExtension``): a full-weight reload from a Hugging Face folder
that also refreshes what vLLM's in-place reload leaves stale.

vLLM's ``reload_weights`` reloads each layer whose weights the folder holds and runs its
post-load processing again. A tied output head (``tie_word_embeddings``) holds none of
its own, so on the CPU backend its pre-packed GEMM keeps the old embedding matrix: the
server would sample with the new input embedding and the old head. Cove's probe after
each sync caught this; this extension re-ties the head to the reloaded embedding and
packs it again.
"""


class CoveWorkerExtension:
    def cove_reload_weights(self, weights_path: str) -> None:
        from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead

        self.reload_weights(weights_path=weights_path)
        model = self.model_runner.get_model()
        config = getattr(model, "config", None)
        inner = getattr(model, "model", None)
        embed = getattr(inner, "embed_tokens", None)
        for module in model.modules():
            if not isinstance(module, ParallelLMHead):
                continue
            if getattr(config, "tie_word_embeddings", False) and embed is not None:
                module.weight = embed.weight
            module.quant_method.process_weights_after_loading(module)
