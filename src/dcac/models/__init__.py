"""dcac.models: the networks. The CLIP ViT Re-ID model (``reid_model``, ``reid_encoder``), the LoRA-adapted
Stable Diffusion teacher (``diffusion_teacher``, ``lora``), the conditioning between them (``conditioning``) and
DCAC itself (``dcac``), each with settings of its own; ``build`` translates a run's config into them and rebuilds
a trained run's Re-ID model; the weight converters read the pre-trained and the official checkpoints.
"""
