"""dcac.models: the networks. The CLIP ViT Re-ID model (``reid_model``, ``reid_encoder``), the LoRA-adapted
Stable Diffusion teacher (``diffusion_teacher``, ``lora``), the conditioning between them (``conditioning``) and
DCAC itself (``dcac``); ``build`` makes them from a run's config, ``loading`` rebuilds a trained run, and the
weight converters read the pre-trained and the official checkpoints.
"""
