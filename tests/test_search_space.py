import json
import random

import optuna
import pytest

from search_spaces import SearchSpace, SpaceError, StageChoices, builtin_spaces, load_space, space_from_dict
from swiftformer import VARIANTS, Block, Stage, SwiftFormer, SwiftFormerArch

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def default():
    return load_space("swiftformer")


def test_default_space_contains_the_released_variants_and_much_more(default):
    assert "swiftformer" in builtin_spaces()
    assert all(arch in default for arch in VARIANTS.values())
    # 4 stages: widths x mlp ratios x sum over depths of the attention counts possible at that depth
    expected = (4 * 2 * 3 * 3) * (5 * 2 * 3 * 3) * (7 * 2 * 6 * 4) * (7 * 2 * 5 * 3)
    assert default.size() == expected > 10 ** 8
    counts = {s.num_attn for arch in default.samples(300, seed=0) for s in arch.stages}
    assert counts == {0, 1, 2, 3}  # no attention, one, or several per stage


def test_same_seed_same_architectures(default):
    assert list(default.samples(20, seed=7)) == list(default.samples(20, seed=7))
    assert list(default.samples(20, seed=7)) != list(default.samples(20, seed=8))
    assert default.sample(3) == default.sample(random.Random(3))


def test_samples_mutations_and_crossovers_are_members(default):
    rng = random.Random(0)
    archs = list(default.samples(40, seed=1))
    for i, (a, b) in enumerate(zip(archs, archs[1:])):
        assert a in default
        child = default.crossover(a, b, rng)
        mutant = default.mutate(a, rng, n=2)
        assert child in default and mutant in default and mutant != a
        assert default.build(default.decisions(a)) == a
        if i < 3:
            SwiftFormer(mutant.replace(resolution=32))  # buildable (a few suffice: building is slow)


def test_outside_the_space_is_explained(default):
    arch = VARIANTS["xs"].replace(stages=VARIANTS["xs"].stages[:3], downsample=None)
    assert arch not in default
    with pytest.raises(SpaceError, match="3 stages"):
        default.decisions(arch)
    odd = SwiftFormerArch.standard([3, 3, 6, 4], [48, 56, 112, 220], attn_blocks=[1, 1, 1, 1])
    odd = odd.replace(stages=(Stage(48, (Block("attn"), Block("conv"), Block("conv"))),) + odd.stages[1:])
    with pytest.raises(SpaceError, match="last ones"):
        default.decisions(odd)
    with pytest.raises(SpaceError, match="stage2.width = 72"):
        default.decisions(VARIANTS["xs"].replace(stages=(VARIANTS["xs"].stages[0], Stage(72, (Block(),) * 3),
                                                          *VARIANTS["xs"].stages[2:])))


def test_encoding_is_fixed_length_and_distinguishes(default):
    codes = {tuple(default.encode(a)) for a in default.samples(50, seed=2)}
    assert {len(c) for c in codes} == {default.encoding_size} and len(codes) == 50


@pytest.mark.parametrize("sampler", [optuna.samplers.TPESampler(seed=0), optuna.samplers.RandomSampler(seed=0),
                                     optuna.samplers.NSGAIISampler(seed=0)])
def test_define_by_run_suggest(default, sampler):
    study = optuna.create_study(sampler=sampler)
    seen = []

    def objective(trial):
        arch = default.suggest(trial)
        assert arch in default
        seen.append(arch)
        return sum(arch.depths)

    study.optimize(objective, n_trials=25)
    assert len(set(seen)) > 15
    assert study.best_value == min(sum(a.depths) for a in seen)


def test_mask_mode_and_files(tmp_path):
    text = """
name: tiny
resolution: [64, 96]
stem_width: [8, 16]
stages:
  - {depth: [1, 2], width: [16, 24], attention: mask}
  - {depth: [2], width: [32], mlp_ratio: [2, 4], attention: last, attn_blocks: [0, 2]}
"""
    (tmp_path / "tiny.yaml").write_text(text)
    space = load_space(tmp_path / "tiny.yaml")
    assert space.name == "tiny"
    assert space.size() == 2 * 2 * (2 * (2 + 4)) * (2 * 2)
    archs = set(space.samples(4000, seed=0))
    assert len(archs) == space.size()  # small enough to see every architecture
    (tmp_path / "tiny.json").write_text(json.dumps(space.to_dict()))
    again = load_space(tmp_path / "tiny.json")
    assert again.size() == space.size() and list(again.samples(5, 1)) == list(space.samples(5, 1))
    python_space = SearchSpace("py", (StageChoices((1, 2), (16,)),))
    assert python_space.size() == 1 * 1 * (2 + 2)


@pytest.mark.parametrize("content, message", [
    ("stages: [{depth: [2], width: [0]}]", "stages[0].width: expected a non-empty list of positive integers"),
    ("stages: [{depth: [2], width: [16], attention: random}]", "stages[0].attention: 'random' is unknown"),
    ("stages: [{depth: [2], width: [16], heads: [2]}]", "stages[0]: unknown field 'heads'"),
    ("stages: [{width: [16]}]", "stages[0]: missing field 'depth'"),
    ("stages: []", "stages must be a non-empty list"),
    ("resolution: [224]", "missing field 'stages'"),
    ("stages: [{depth: [2], width: [16], mlp_ratio: [-1]}]", "stages[0].mlp_ratio"),
    ("stages: [{depth: [2], width: [16]}]\nresolution: fast", "resolution: expected a non-empty list"),
    ("stages: [{depth: [2, 2], width: [16]}]", "repeated choices"),
    ("stages: [{depth: [2], width: [16]}\n", "not valid YAML"),
])
def test_malformed_space_files_name_the_field(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(SpaceError) as info:
        load_space(path)
    assert message in str(info.value) and str(path) in str(info.value)


def test_unknown_space_name():
    with pytest.raises(SpaceError, match="unknown space 'nope'; accepted: fbnet, nb201, swiftformer"):
        load_space("nope")
    with pytest.raises(SpaceError, match="does not exist"):
        load_space("missing.yaml")
    with pytest.raises(SpaceError, match="expected a mapping"):
        space_from_dict([1, 2])


def test_trial_params_make_suggest_return_the_same_architecture(default):
    for space in (default, load_space_tiny()):
        for arch in space.samples(20, seed=9):
            study = optuna.create_study()
            study.enqueue_trial(space.trial_params(arch))
            trial = study.ask()
            assert space.suggest(trial) == arch


def load_space_tiny() -> SearchSpace:
    return space_from_dict({"name": "tiny", "resolution": [64, 96], "stages": [
        {"depth": [1, 3], "width": [16], "attention": "mask"},
        {"depth": [2, 4], "width": [24, 32], "attention": "last", "attn_blocks": [0, 3]}]})
