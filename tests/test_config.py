import pytest

from dcac.config import ConfigError, DCACConfig, config_from_dict, load_config, preset_names

RELEASED = [
    "ma_to_ms",
    "ms_to_ma",
    "d_to_ma",
    "c3_to_ma",
    "d+ms+c3_to_ma",
    "ma+d+c3_to_ms",
    "ma+d+ms_to_c3",
    "ma+ms+c3_to_d",
]


def test_defaults_are_the_paper_recipe():
    c = DCACConfig()
    assert (c.optim.lr, c.optim.weight_decay, c.optim.epochs) == (5e-6, 1e-4, 60)
    assert (c.optim.warmup_epochs, c.optim.warmup_factor, c.optim.milestones, c.optim.gamma) == (10, 0.1, [30, 50], 0.1)
    assert (c.data.batch_size, c.data.num_instances, c.data.height, c.data.width) == (64, 4, 256, 128)
    assert (c.loss.pcl_temperature, c.loss.pcl_momentum, c.loss.label_smoothing) == (0.01, 0.2, 0.1)
    assert (c.diffusion.lora_alpha, c.diffusion.mode, c.data.diffusion_size) == (1.0, "lora", 128)
    assert c.conditioning.variant == "correlation" and c.conditioning.prob_source == "fc"


@pytest.mark.parametrize(
    "name,sources,target,rank,tau",
    [
        ("ma_to_ms", ["market1501"], "msmt17", 8, 0.6),
        ("ms_to_ma", ["msmt17"], "market1501", 32, 1.0),
        ("d_to_ma", ["dukemtmc"], "market1501", 8, 0.6),
        ("c3_to_ma", ["cuhk03"], "market1501", 8, 0.1),
        ("d+ms+c3_to_ma", ["dukemtmc", "msmt17", "cuhk03"], "market1501", 32, 1.0),
        ("ma+d+c3_to_ms", ["market1501", "dukemtmc", "cuhk03"], "msmt17", 32, 1.0),
        ("ma+d+ms_to_c3", ["market1501", "dukemtmc", "msmt17"], "cuhk03", 32, 1.0),
        ("ma+ms+c3_to_d", ["market1501", "msmt17", "cuhk03"], "dukemtmc", 32, 1.0),
    ],
)
def test_released_presets(name, sources, target, rank, tau):
    c = load_config(name)
    assert c.data.sources == sources and c.data.targets == [target]
    assert c.diffusion.lora_rank == rank and c.conditioning.temperature == tau


def test_every_preset_loads_and_baseline_has_no_teacher():
    assert set(RELEASED) | {"baseline", "demo"} <= set(preset_names())
    for name in preset_names():
        load_config(name)
    assert load_config("baseline").conditioning.variant == "none"


def test_overrides_are_typed():
    c = load_config(
        "ma_to_ms", ["optim.lr=1e-5", "data.sources=[ma,d]", "conditioning.variant=hard", "eval.rerank=true"]
    )
    assert (
        c.optim.lr == 1e-5
        and c.data.sources == ["ma", "d"]
        and c.conditioning.variant == "hard"
        and c.eval.rerank is True
    )


@pytest.mark.parametrize(
    "override,needle",
    [
        ("optim.lrr=1", "optim.lrr"),
        ("nosuch.key=1", "nosuch.key"),
        ("optim.lr=fast", "optim.lr"),
        ("conditioning.variant=soft", "conditioning.variant"),
        ("data.batch_size=30", "data.batch_size"),
        ("train.mixed_precision=fp8", "train.mixed_precision"),
        ("train.compile=sometimes", "train.compile"),
        ("data.augment_on=gpu", "data.augment_on"),
        ("lr", "key=value"),
    ],
)
def test_bad_overrides_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_config("ma_to_ms", [override])


def test_unknown_key_in_a_file_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate") as info:
        load_config(str(bad))
    assert "bad.yaml" in str(info.value)
    with pytest.raises(ConfigError, match="unknown preset"):
        load_config("ma_to_nowhere")


def test_config_round_trips_through_yaml(tmp_path):
    c = load_config("c3_to_ma", ["optim.epochs=3"])
    path = tmp_path / "config.yaml"
    path.write_text(c.to_yaml())
    from omegaconf import OmegaConf

    assert config_from_dict(OmegaConf.to_container(OmegaConf.load(path))) == c


def test_training_speed_defaults_and_compile_switch():
    from dcac.engine.training_setup import compile_enabled

    c = load_config("ma_to_ms")
    assert c.train.compile == "auto" and c.encoder.gradient_checkpointing and c.train.frozen_weights_in_autocast_dtype
    assert not c.diffusion.gradient_checkpointing and c.diffusion.cache_latents and c.train.mixed_precision == "bf16"
    # auto compiles on CUDA only: torch 2.13's CPU inductor gets the UNet's backward wrong.
    assert compile_enabled(c.train, "cuda") and not compile_enabled(c.train, "cpu")
    for value, expected in (("true", True), ("True", True), ("false", False)):
        train = load_config("ma_to_ms", [f"train.compile={value}"]).train
        assert compile_enabled(train, "cpu") is expected and compile_enabled(train, "cuda:0") is expected
    demo = load_config("demo")
    assert demo.train.compile == "false" and not demo.encoder.gradient_checkpointing
