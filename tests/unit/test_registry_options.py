"""`tracking.only_champion`: a validated config key, in params.yaml, settable with --set and by
the scheduled Prefect deployment (`python -m flows.deploy serve --only-champion`)."""

from pathlib import Path

import pytest
import yaml

from ganzoo.config import load_config
from ganzoo.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_only_champion_is_a_validated_key_in_params_yaml():
    assert yaml.safe_load((REPO / "params.yaml").read_text())["tracking"]["only_champion"] is False
    assert load_config(None, []).tracking.only_champion is False
    assert load_config(None, ["tracking.only_champion=true"]).tracking.only_champion is True
    with pytest.raises(ConfigError, match="only_champion"):
        load_config(None, ["tracking.only_champion=sometimes"])
    with pytest.raises(ConfigError, match="only_champion"):  # a misspelt key names the right one
        load_config(None, ["tracking.only_champoin=true"])


def test_the_scheduled_deployment_can_register_only_champions(monkeypatch):
    import flows.deploy as deploy

    served: list[dict] = []
    monkeypatch.setattr(deploy, "serve", lambda **kwargs: served.append(kwargs))
    deploy.main(["serve", "--only-champion", "--set", "variant=lsgan"])
    deploy.main(["serve"])
    assert served[0]["overrides"] == ["variant=lsgan", "tracking.only_champion=true"]
    assert served[1]["overrides"] == []
    params = deploy.scheduled_deployment(overrides=served[0]["overrides"]).parameters
    assert "tracking.only_champion=true" in params["overrides"]
