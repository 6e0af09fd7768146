"""Configuration from the environment: precedence, defaults and refusal of bad values."""

from __future__ import annotations

import pytest

from simulator.config import SANDBOX_PASSKEY, SimulatorConfig


def test_defaults():
    config = SimulatorConfig.from_env({})
    assert config.consumer_key == "simulator-consumer-key"
    assert config.consumer_secret == "simulator-consumer-secret"
    assert config.shortcode == "174379"
    assert config.passkey == SANDBOX_PASSKEY
    assert config.till_number == "174380"
    assert config.token_ttl == 3599
    assert config.callback_delay == 2.0
    assert config.answer_delay == 2.0  # customer delay defaults to the callback delay
    assert config.chaos_rate == 0
    assert config.seed is None


def test_simulator_variables_win_over_mpesa_ones():
    env = {
        "MPESA_CONSUMER_KEY": "mk",
        "MPESA_CONSUMER_SECRET": "ms",
        "MPESA_SHORTCODE": "600000",
        "MPESA_PASSKEY": "mp",
        "SIMULATOR_CONSUMER_KEY": "sk",
        "SIMULATOR_PASSKEY": "",  # empty counts as unset
    }
    config = SimulatorConfig.from_env(env)
    assert (config.consumer_key, config.consumer_secret) == ("sk", "ms")
    assert (config.shortcode, config.passkey) == ("600000", "mp")


def test_numbers_and_overrides():
    env = {
        "SIMULATOR_TOKEN_TTL": "60",
        "SIMULATOR_CALLBACK_DELAY": "0.5",
        "SIMULATOR_CUSTOMER_DELAY": "1.5",
        "SIMULATOR_CHAOS_RATE": "0.25",
        "SIMULATOR_SEED": "42",
        "SIMULATOR_TILL_NUMBER": "5555",
    }
    config = SimulatorConfig.from_env(env, chaos_rate=0.5, seed=None)
    assert config.token_ttl == 60
    assert config.callback_delay == 0.5
    assert config.answer_delay == 1.5
    assert config.chaos_rate == 0.5  # the keyword (CLI flag) wins; None overrides nothing
    assert config.seed == 42
    assert config.till_number == "5555"


@pytest.mark.parametrize(
    "env",
    [
        {"SIMULATOR_CALLBACK_DELAY": "soon"},
        {"SIMULATOR_SEED": "1.5"},
        {"SIMULATOR_CHAOS_RATE": "2"},
        {"SIMULATOR_QUERY_PENDING": "sometimes"},
        {"MPESA_SHORTCODE": "abc"},
        {"SIMULATOR_TOKEN_TTL": "-1"},
    ],
)
def test_bad_values_stop_start_up(env):
    with pytest.raises(ValueError):
        SimulatorConfig.from_env(env)
