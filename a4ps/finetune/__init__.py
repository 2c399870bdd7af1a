"""UnslothForge (organ 9, first half): a LoRA fine-tune of one persona on its golden samples.

Modules: dataset (golden JSONL read and validated; the deterministic held-out split the gate uses),
spec (one job's parameters), engines (which trainer runs: Unsloth on CUDA, TRL/PEFT on CPU),
sft (the shared SFTTrainer set-up and its progress callback), cpu_engine and cuda_engine (model
loading and adapter saving per engine), gguf_lora (a PEFT adapter to a GGUF LoRA llama.cpp loads),
job (one job in this process: train into a temp dir, convert, report, rename), worker (the job's
own process, `python -m a4ps.finetune.worker`), runner (starts a worker, streams its progress, keeps
the durable job record), jobs (those records and the one-job-at-a-time lock), tuner (the backend's
supervised `finetune` loop: the trigger, cancel, restart), requests (backend commands), commands (CLI).
Nothing is imported here, and torch only inside the worker, so the app starts without torch.
"""
