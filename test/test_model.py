"""The model's parts on their own: shapes, schedule, tokenizer, normaliser, sampler."""

import numpy as np
import pytest
import torch

from minivla_test_utils import tiny_model_config
from minivla_core.config import ENGINES
from minivla_core.errors import InstructionError
from minivla_core.model.diffusion import DiffusionHead, cosine_alpha_bar, ddim_timesteps
from minivla_core.model.engines import OnnxRuntimeSampler
from minivla_core.model.normalizer import RangeNormalizer
from minivla_core.model.policy import PolicyRunner, VLAPolicy
from minivla_core.model.tokenizer import WordTokenizer


def make_policy(**overrides):
    config = tiny_model_config()
    for key, value in overrides.items():
        setattr(config, key, value)
    vocab = WordTokenizer.from_texts(["push the puck to the goal"]).vocab
    return VLAPolicy(config, vocab, state_dim=39, action_dim=4, image_size=32)


def test_schedule_reaches_pure_noise_at_the_last_step():
    alpha_bar = cosine_alpha_bar(100)
    assert alpha_bar[0] > 0.999  # the first level is almost clean
    assert alpha_bar[-1] < 1e-4  # the last level is (numerically) pure noise
    assert torch.all(alpha_bar[1:] < alpha_bar[:-1])


def test_ddim_timesteps_start_at_pure_noise_and_descend():
    for steps in (1, 5, 10, 100):
        levels = ddim_timesteps(100, steps)
        assert levels[0] == 99 and len(levels) == steps
        assert levels == sorted(levels, reverse=True) and len(set(levels)) == steps
    with pytest.raises(ValueError):
        ddim_timesteps(100, 0)
    with pytest.raises(ValueError):
        ddim_timesteps(100, 101)


def test_encoder_and_chunk_shapes():
    policy = make_policy()
    images = torch.rand(3, 1, 3, 32, 32)
    states = torch.randn(3, 39)
    tokens, lengths, unknown = policy.tokenize(["push the puck", "push the puck to the goal", "goal"])
    assert tokens.shape == (3, 6) and lengths.tolist() == [3, 6, 1] and unknown == []
    cond = policy.encode(images, states, tokens, lengths)
    assert cond.shape == (3, 32)
    chunk = policy.predict_action_chunk(images, states, tokens, lengths, inference_steps=2)
    assert chunk.shape == (3, 4, 4)
    loss = policy.compute_loss(images, states, tokens, lengths, torch.rand(3, 4, 4), noise_samples=2)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_padding_does_not_change_the_text_token():
    policy = make_policy().eval()
    alone, lengths_alone, _ = policy.tokenize(["push the puck"])
    padded, lengths_padded, _ = policy.tokenize(["push the puck", "push the puck to the goal"])
    with torch.no_grad():
        a = policy.text_encoder(alone, lengths_alone)[0]
        b = policy.text_encoder(padded, lengths_padded)[0]
    torch.testing.assert_close(a, b)


def test_tokenizer_maps_unknown_words_to_unk_and_rejects_empty_text():
    tokenizer = WordTokenizer.from_texts(["push the puck to the goal"])
    ids, unknown = tokenizer.encode("Push the BLUE puck, quickly!", max_tokens=32)
    assert unknown == ["blue", "quickly"]
    assert ids[2] == ids[4] == 1  # <unk>
    assert ids[0] == tokenizer.ids["push"]
    ids, _ = tokenizer.encode("goal " * 1000, max_tokens=32)
    assert len(ids) == 32
    for empty in ("", "   ", "?!"):
        with pytest.raises(InstructionError, match="empty"):
            tokenizer.encode(empty, max_tokens=32)


def test_stemming_tokenizer_treats_inflections_as_one_word():
    tokenizer = WordTokenizer.from_texts(["shove the puck until it reaches the goal"], stem=True)
    ids, unknown = tokenizer.encode("it Reaching the goals", max_tokens=32)
    assert unknown == []
    assert ids == tokenizer.encode("it reach the goal", max_tokens=32)[0]
    plain = WordTokenizer.from_texts(["shove the puck until it reaches the goal"], stem=False)
    assert plain.encode("it reaching the goals", max_tokens=32)[1] == ["reaching", "goals"]


def test_normalizers_round_trip():
    data = torch.randn(500, 5) * torch.tensor([1.0, 10.0, 0.01, 3.0, 0.0]) + torch.tensor([0.0, 5.0, -2.0, 1.0, 7.0])
    for mode in ("limits", "gaussian"):
        normalizer = RangeNormalizer(5, mode)
        normalizer.fit(data)
        normalized = normalizer.normalize(data)
        torch.testing.assert_close(normalizer.unnormalize(normalized), data, atol=1e-4, rtol=1e-4)
        assert torch.all(torch.isfinite(normalized))
        assert torch.allclose(normalized[:, 4], torch.zeros(500), atol=1e-5)  # constant: centred, not divided by 0
        varying = normalized[:, :4]
        if mode == "limits":
            assert varying.min() >= -1 - 1e-5 and varying.max() <= 1 + 1e-5
            torch.testing.assert_close(varying.min(0).values, -torch.ones(4))
        else:
            torch.testing.assert_close(varying.mean(0), torch.zeros(4), atol=1e-4, rtol=0)


def test_a_constant_action_dimension_is_pinned_to_its_value():
    """A gripper closed through every demonstration: whatever the sampler returns in [-1, 1] for it, the action
    is exactly the constant (it used to be passed through, and a sample of -1.05 left the action range)."""
    actions = torch.cat([torch.rand(200, 3) * 2 - 1, -torch.ones(200, 1)], dim=1)
    normalizer = RangeNormalizer(4, "limits")
    normalizer.fit(actions)
    assert torch.all(normalizer.normalize(actions)[:, 3] == 0)
    samples = torch.rand(50, 4) * 2 - 1
    assert torch.all(normalizer.unnormalize(samples)[:, 3] == -1.0)
    torch.testing.assert_close(normalizer.unnormalize(normalizer.normalize(actions)), actions, atol=1e-5, rtol=0)


def test_a_policy_for_a_robot_with_no_gripper_acts_in_its_commands_own_three_numbers(tmp_path):
    """A planar arm's twist: x, y, and a z that is 0 in every demonstration; no gripper number. Through a checkpoint,
    the policy's actions are those 3 numbers, z pinned to 0 (issue 23: an action was 4 numbers, gripper last)."""
    from minivla_core.actions import check_action
    from minivla_core.checkpoint import load_policy, save_checkpoint

    vocab = WordTokenizer.from_texts(["reach the red dot"]).vocab
    policy = VLAPolicy(tiny_model_config(), vocab, state_dim=5, action_dim=3, image_size=32)
    policy.state_normalizer.fit(torch.randn(100, 5))
    policy.action_normalizer.fit(torch.cat([torch.rand(200, 2) * 1.5 - 0.75, torch.zeros(200, 1)], dim=1))
    save_checkpoint(tmp_path / "arm.pt", policy, {"task": "planar-reach", "observation": "robot", "camera": "camera",
                                                  "camera_position": [], "image_size": 32})
    loaded, payload = load_policy(tmp_path / "arm.pt", state_dim=5, action_dim=3)
    assert payload["action_dim"] == 3
    runner = PolicyRunner(loaded, "reach the red dot")
    image, state = np.zeros((1, 32, 32, 3), np.uint8), np.array([0.2, 0.3, 0.1, 0.5, 1.2], np.float32)
    actions = np.stack([check_action(runner.act(image, state), size=3) for _ in range(3)])
    assert actions.shape == (3, 3) and np.all(actions[:, 2] == 0.0)
    with pytest.raises(ValueError, match="action has 3 numbers, expected 4"):
        check_action(actions[0])  # the simulated arms' size stays the default


@pytest.mark.parametrize("prediction_type", ["epsilon", "sample", "v"])
def test_sampler_recovers_a_learnable_target(prediction_type):
    """A denoiser trained on one fixed chunk must sample that chunk (real training, real DDIM)."""
    torch.manual_seed(0)
    head = DiffusionHead(horizon=2, action_dim=2, cond_dim=8, hidden=64, blocks=2, train_steps=50,
                         prediction_type=prediction_type)
    target = torch.tensor([[0.5, -0.5], [0.25, 0.75]])
    cond = torch.zeros(64, 8)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(400):
        loss = head.loss(target.expand(64, 2, 2), cond)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    sample = head.sample(cond[:16], inference_steps=10)
    assert (sample - target).abs().mean() < 0.1


def test_runner_executes_n_action_steps_per_chunk_and_checks_inputs():
    policy = make_policy()
    runner = PolicyRunner(policy, "push the puck", n_action_steps=2)
    image = np.zeros((1, 32, 32, 3), np.uint8)
    state = np.zeros(39, np.float32)
    for _ in range(5):
        action = runner.act(image, state)
        assert action.shape == (4,)
    assert runner.chunk_index == 2  # chunks sampled at calls 1, 3 and 5
    with pytest.raises(ValueError, match="expected \\(1, 32, 32, 3\\) uint8"):
        runner.act(np.zeros((1, 64, 64, 3), np.uint8), state)
    with pytest.raises(ValueError, match="NaN"):
        runner.sample_chunk(image, np.full(39, np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        runner.sample_chunk(image, np.zeros(7, np.float32))
    assert runner.set_instruction("push the red block") == ["red", "block"]


def test_text_film_conditions_the_observation_tokens_on_the_instruction():
    policy = make_policy(text_film=True)
    assert policy.fusion.film is not None and make_policy().fusion.film is None
    images, states = torch.rand(2, 1, 3, 32, 32), torch.randn(2, 39)
    tokens, lengths, _ = policy.tokenize(["push the puck", "goal"])
    with torch.no_grad():  # zero the film layer: the instruction then only enters through concatenation
        policy.fusion.film.weight.zero_()
        policy.fusion.film.bias.zero_()
        plain = policy.encode(images, states, tokens, lengths)
        policy.fusion.film.bias[:32].fill_(1.0)  # image features doubled by the text pathway
        modulated = policy.encode(images, states, tokens, lengths)
    assert not torch.allclose(plain, modulated)
    loss = policy.compute_loss(images, states, tokens, lengths, torch.rand(2, 4, 4))
    loss.backward()
    assert policy.fusion.film.weight.grad is not None


def test_foreign_instructions_relabel_samples_from_other_scenes_to_hold_still():
    from minivla_core.data.dataset import Episode
    from minivla_core.train import InstructionTable, StepDataset, batch_inputs

    rng = np.random.default_rng(0)

    def episode(task, instruction, steps=20):
        actions = rng.uniform(0.2, 1.0, (steps, 4)).astype(np.float32)
        return Episode(rng.integers(0, 255, (steps, 1, 32, 32, 3), dtype=np.uint8),
                       rng.normal(size=(steps, 39)).astype(np.float32), actions, task, instruction)

    episodes = [episode("push-v3", "push the puck to the goal"), episode("reach-v3", "reach the goal position"),
                episode("drawer-open-v3", "open the drawer")]
    instructions = ["open the drawer", "push the puck to the goal", "reach the goal position"]
    scene_ids = {"drawer-open-v3": 0, "puck": 1}
    policy = VLAPolicy(tiny_model_config(), WordTokenizer.from_texts(instructions).vocab, 39, 4, 32)
    table = InstructionTable(policy, instructions, [0, 1, 1])
    data = StepDataset(episodes, horizon=8, instruction_ids={t: i for i, t in enumerate(instructions)},
                       scene_ids=scene_ids)
    index = torch.arange(len(data))
    plain = batch_inputs(data, index, table, "cpu")
    relabelled = batch_inputs(data, index, table, "cpu", generator=torch.Generator().manual_seed(0),
                              foreign_instructions=0.5)
    changed = (relabelled.tokens != plain.tokens).any(dim=1)
    assert 0.3 < changed.float().mean() < 0.7
    drawer_tokens = table.tokens[0]
    for row in changed.nonzero().flatten():
        from_drawer = bool(data.scenes[row] == 0)
        assert torch.equal(relabelled.tokens[row], drawer_tokens) != from_drawer  # always another scene's words
        chunk = relabelled.chunks[row]
        assert torch.all(chunk[:, :3] == 0) and torch.all(chunk[:, 3] == plain.chunks[row, 0, 3])
    torch.testing.assert_close(relabelled.chunks[~changed], plain.chunks[~changed])


@pytest.mark.parametrize("engine", ENGINES)
def test_the_runners_sampler_computes_what_predict_action_chunk_does(engine):
    """PolicyRunner samples through ChunkSampler run as one graph by either engine (ONNX Runtime, TorchScript): the
    same numbers as the plain model, from the same noise; it is built again when the number of DDIM steps changes."""
    policy = make_policy().eval()
    runner = PolicyRunner(policy, "push the puck to the goal", seed=3, engine=engine)
    if engine == "onnxruntime":
        assert isinstance(runner.sampler, OnnxRuntimeSampler)  # not the TorchScript fallback
    rng = np.random.default_rng(0)
    image, state = rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), rng.normal(size=39).astype(np.float32)
    for steps in (10, 3):
        runner.inference_steps = steps
        runner.reset(episode=7)
        chunk = runner.sample_chunk(image, state)
        assert runner.sampler_steps == steps
        plain = policy.predict_action_chunk(torch.from_numpy(image)[None].permute(0, 1, 4, 2, 3).float() / 255,
                                            torch.from_numpy(state)[None], runner.tokens, runner.lengths, steps,
                                            torch.Generator().manual_seed(3 * 1_000_003 + 7))[0].numpy()
        np.testing.assert_allclose(chunk, plain, atol=1e-5)
    assert np.abs(runner.sample_chunk(image, state) - chunk).max() > 1e-3  # the noise moved on: another chunk


def test_both_engines_inpaint_the_same_chunk_around_the_frozen_actions():
    policy = make_policy().eval()
    rng = np.random.default_rng(1)
    image, state = rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), rng.normal(size=39).astype(np.float32)
    frozen = rng.uniform(-1, 1, (3, policy.action_dim)).astype(np.float32)
    chunks = []
    for engine in ENGINES:
        runner = PolicyRunner(policy, "push the puck to the goal", seed=5, engine=engine)
        runner.reset(episode=2)
        chunks.append(runner.sample_continuing(image, state, frozen))
    np.testing.assert_allclose(chunks[0], chunks[1], atol=1e-5)
    np.testing.assert_allclose(chunks[0][:3], frozen, atol=1e-5)  # the frozen actions are kept
